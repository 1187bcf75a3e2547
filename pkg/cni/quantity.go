package cni

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// suffixes maps a Kubernetes resource.Quantity suffix to its multiplier.
// Kubernetes' quantity syntax is reimplemented here (a few dozen lines)
// rather than importing k8s.io/apimachinery, which this module does not
// otherwise need.
var suffixes = map[string]*big.Rat{
	"":   big.NewRat(1, 1),
	"n":  big.NewRat(1, 1_000_000_000),
	"u":  big.NewRat(1, 1_000_000),
	"m":  big.NewRat(1, 1000),
	"k":  big.NewRat(1000, 1),
	"M":  new(big.Rat).SetInt64(1_000_000),
	"G":  new(big.Rat).SetInt64(1_000_000_000),
	"T":  new(big.Rat).SetInt64(1_000_000_000_000),
	"P":  new(big.Rat).SetInt64(1_000_000_000_000_000),
	"E":  new(big.Rat).SetInt64(1_000_000_000_000_000_000),
	"Ki": new(big.Rat).SetInt64(1 << 10),
	"Mi": new(big.Rat).SetInt64(1 << 20),
	"Gi": new(big.Rat).SetInt64(1 << 30),
	"Ti": new(big.Rat).SetInt64(1 << 40),
	"Pi": new(big.Rat).SetInt64(1 << 50),
	"Ei": new(big.Rat).SetInt64(1 << 60),
}

// parseQuantity parses a Kubernetes resource quantity ("10M", "1.5Gi",
// "100k", "2e6") and returns its value rounded up to an integer, as
// resource.Quantity.Value does. Negative values and values that do not fit
// an int64 are errors.
func parseQuantity(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty quantity")
	}
	// The number is an optional sign, digits and at most one '.'.
	i := 0
	if s[0] == '+' || s[0] == '-' {
		i++
	}
	digits, dot := 0, false
	for ; i < len(s); i++ {
		c := s[i]
		if c >= '0' && c <= '9' {
			digits++
			continue
		}
		if c == '.' && !dot {
			dot = true
			continue
		}
		break
	}
	if digits == 0 {
		return 0, fmt.Errorf("quantity %q: no number", s)
	}
	num, ok := new(big.Rat).SetString(s[:i])
	if !ok {
		return 0, fmt.Errorf("quantity %q: bad number", s)
	}
	suffix := s[i:]
	mult, ok := suffixes[suffix]
	if !ok {
		// A decimal exponent: "e6" or "E6" (an "E" alone is exa, above).
		if len(suffix) < 2 || (suffix[0] != 'e' && suffix[0] != 'E') {
			return 0, fmt.Errorf("quantity %q: unknown suffix %q", s, suffix)
		}
		exp, err := strconv.Atoi(suffix[1:])
		if err != nil {
			return 0, fmt.Errorf("quantity %q: bad exponent %q", s, suffix)
		}
		if exp < -18 || exp > 18 {
			return 0, fmt.Errorf("quantity %q: exponent out of range", s)
		}
		ten := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(exp))), nil)
		mult = new(big.Rat).SetInt(ten)
		if exp < 0 {
			mult.Inv(mult)
		}
	}
	v := new(big.Rat).Mul(num, mult)
	if v.Sign() < 0 {
		return 0, fmt.Errorf("quantity %q: negative", s)
	}
	// Round up, as resource.Quantity.Value does.
	q, r := new(big.Int).QuoRem(v.Num(), v.Denom(), new(big.Int))
	if r.Sign() != 0 {
		q.Add(q, big.NewInt(1))
	}
	if !q.IsInt64() {
		return 0, fmt.Errorf("quantity %q: too large", s)
	}
	return q.Int64(), nil
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
