package image

import (
	"fmt"
	"io"
	"sync/atomic"
)

// budget is what is left of the uncompressed bytes one pull may unpack. A
// few kilobytes of gzip can expand to gigabytes: without a bound, one
// hostile image fills the node's disk. A nil budget is unbounded.
type budget struct {
	max  int64
	left atomic.Int64
}

func newBudget(max int64) *budget {
	if max <= 0 {
		return nil
	}
	b := &budget{max: max}
	b.left.Store(max)
	return b
}

// limit returns r, failing with ErrTooLarge once the pull's layers have
// produced more than the budget.
func (b *budget) limit(r io.Reader) io.Reader {
	if b == nil {
		return r
	}
	return &budgetReader{r: r, b: b}
}

type budgetReader struct {
	r io.Reader
	b *budget
}

func (br *budgetReader) Read(p []byte) (int, error) {
	n, err := br.r.Read(p)
	if br.b.left.Add(-int64(n)) < 0 {
		return 0, fmt.Errorf("%w: its layers expand to more than %d bytes uncompressed (image.max_uncompressed_size)", ErrTooLarge, br.b.max)
	}
	return n, err
}
