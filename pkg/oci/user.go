package oci

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"github.com/moby/sys/user"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// maxUserFileBytes bounds how much of a rootfs's /etc/passwd or /etc/group
// is read; a hostile image must not make the daemon buffer gigabytes.
const maxUserFileBytes = 10 << 20

// UserRequest says whom a container process runs as. The CRI fields win
// over the image's USER: UID or Username (with GID) when set, else Image.
type UserRequest struct {
	// UID is run_as_user.
	UID *int64
	// Username is run_as_username; it must exist in the image.
	Username string
	// GID is run_as_group; it needs UID or Username.
	GID *int64
	// Image is the image config's User: "name", "uid", "name:group",
	// "uid:gid", "uid:group" or "name:gid". Used only when neither UID nor
	// Username is set.
	Image string
	// SupplementalGroups is supplemental_groups; always added.
	SupplementalGroups []int64
	// Strict is supplemental_groups_policy Strict: do not add the groups
	// /etc/group in the image lists the user in.
	Strict bool
	// NonRoot is the pod's runAsNonRoot: resolving to uid 0 is an error.
	// CRI v1 carries no such field (kubelet checks what it can itself);
	// it is checked here on the resolved uid, which also covers an image
	// USER given as a name, and an image without a USER.
	NonRoot bool
}

// ResolveUser resolves req against rootfs's /etc/passwd and /etc/group.
// rootfs "" means no user database (numeric users only). A numeric uid or
// gid absent from the database is fine (gid 0 when none is given or
// found); a name that is not found is an ErrInvalid error naming the field.
//
// additionalGids always starts with the primary gid: with an empty list
// runc would leave the supplementary groups of its own process in place
// (CVE-2023-25173), and `id` in a Kubernetes container is expected to list
// the primary group. home is the user's home directory from /etc/passwd,
// "/" when unknown.
func ResolveUser(rootfs string, req UserRequest) (u specs.User, home string, err error) {
	var userPart, groupPart, userField, groupField string
	switch {
	case req.Username != "":
		userPart, userField = req.Username, "run_as_username"
	case req.UID != nil:
		userPart, userField = strconv.FormatInt((*req.UID), 10), "run_as_user"
	case req.GID != nil:
		// The CRI contract: run_as_group without a user is an error.
		return u, "", invalid("run_as_group", "set without run_as_user or run_as_username")
	default:
		userPart, groupPart, _ = strings.Cut(req.Image, ":")
		userField, groupField = "image config User", "image config User"
		if req.Image != "" && userPart == "" {
			return u, "", invalid(userField, "%q has no user part", req.Image)
		}
	}
	if req.GID != nil {
		groupPart, groupField = strconv.FormatInt((*req.GID), 10), "run_as_group"
	}

	db, err := readUserDB(rootfs)
	if err != nil {
		return u, "", err
	}

	uid, gid, name := 0, 0, ""
	home = "/"
	if userPart == "" {
		userPart = "0"
	}
	if n, numeric, perr := parseID(userPart); perr != nil {
		return u, "", invalid(userField, "%q: %v", userPart, perr)
	} else if numeric {
		uid = n
		if e, ok := db.userByUID(n); ok {
			gid, name, home = e.Gid, e.Name, e.Home
		}
	} else {
		e, ok := db.userByName(userPart)
		if !ok {
			return u, "", invalid(userField, "user %q not found in the image's /etc/passwd", userPart)
		}
		if err := imageID("/etc/passwd", "uid of user "+e.Name, e.Uid); err != nil {
			return u, "", err
		}
		uid, gid, name, home = e.Uid, e.Gid, e.Name, e.Home
	}
	if err := imageID("/etc/passwd", "gid of user "+name, gid); err != nil {
		return u, "", err
	}

	if req.NonRoot && uid == 0 {
		var why string
		switch {
		case userField != "image config User":
			why = fmt.Sprintf("%s %q resolves to uid 0", userField, userPart)
		case req.Image == "":
			why = "the image sets no USER, so it runs as root"
		default:
			why = fmt.Sprintf("the image USER %q resolves to uid 0", req.Image)
		}
		return u, "", invalid("run_as_non_root", "container must run as a non-root user, but %s", why)
	}

	if groupPart != "" {
		n, numeric, perr := parseID(groupPart)
		switch {
		case perr != nil:
			return u, "", invalid(groupField, "%q: %v", groupPart, perr)
		case numeric:
			gid = n
		default:
			g, ok := db.groupByName(groupPart)
			if !ok {
				return u, "", invalid(groupField, "group %q not found in the image's /etc/group", groupPart)
			}
			if err := imageID("/etc/group", "gid of group "+g.Name, g.Gid); err != nil {
				return u, "", err
			}
			gid = g.Gid
		}
	}
	if home == "" {
		home = "/"
	}

	gids := []uint32{uint32(gid)}
	addGid := func(g uint32) {
		if !slices.Contains(gids, g) {
			gids = append(gids, g)
		}
	}
	if !req.Strict && name != "" {
		for _, g := range db.groups {
			if !slices.Contains(g.List, name) {
				continue
			}
			if err := imageID("/etc/group", "gid of group "+g.Name, g.Gid); err != nil {
				return u, "", err
			}
			addGid(uint32(g.Gid))
		}
	}
	for i, g := range req.SupplementalGroups {
		if !validID(g) {
			return u, "", invalid(fmt.Sprintf("supplemental_groups[%d]", i), "gid %d out of range", g)
		}
		addGid(uint32(g))
	}
	return specs.User{UID: uint32(uid), GID: uint32(gid), AdditionalGids: gids}, home, nil
}

// validID reports whether id is a uid or gid we hand to the kernel. The
// spec's fields are 32-bit: a larger id would be truncated (4294967296
// becomes root), and kubelet allows nothing beyond 2^31-1.
func validID(id int64) bool { return id >= 0 && id <= math.MaxInt32 }

// imageID checks an id the image's user database gives (what names it:
// "uid of user evil"); the image is not trusted.
func imageID(file, what string, id int) error {
	if !validID(int64(id)) {
		return invalid("image "+file, "%s: %d out of range", what, id)
	}
	return nil
}

// parseID parses a numeric uid/gid. numeric is false for a name.
func parseID(s string) (id int, numeric bool, err error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, true, errors.New("id out of range")
		}
		return 0, false, nil
	}
	if !validID(n) {
		return 0, true, errors.New("id out of range")
	}
	return int(n), true, nil
}

type userDB struct {
	users  []user.User
	groups []user.Group
}

func (d *userDB) userByUID(uid int) (user.User, bool) {
	for _, u := range d.users {
		if u.Uid == uid {
			return u, true
		}
	}
	return user.User{}, false
}

func (d *userDB) userByName(name string) (user.User, bool) {
	for _, u := range d.users {
		if u.Name == name {
			return u, true
		}
	}
	return user.User{}, false
}

func (d *userDB) groupByName(name string) (user.Group, bool) {
	for _, g := range d.groups {
		if g.Name == name {
			return g, true
		}
	}
	return user.Group{}, false
}

// readUserDB parses rootfs/etc/passwd and rootfs/etc/group. A missing file
// is an empty database, as for images built FROM scratch.
func readUserDB(rootfs string) (*userDB, error) {
	db := &userDB{}
	if rootfs == "" {
		return db, nil
	}
	root, err := os.OpenFile(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("oci: open rootfs %s: %w", rootfs, err)
	}
	defer root.Close()

	if r, err := openInRoot(root, "/etc/passwd"); err != nil {
		return nil, err
	} else if r != nil {
		db.users, err = user.ParsePasswd(r)
		r.Close()
		if err != nil {
			return nil, fmt.Errorf("oci: parse image /etc/passwd: %w", err)
		}
	}
	if r, err := openInRoot(root, "/etc/group"); err != nil {
		return nil, err
	} else if r != nil {
		db.groups, err = user.ParseGroup(r)
		r.Close()
		if err != nil {
			return nil, fmt.Errorf("oci: parse image /etc/group: %w", err)
		}
	}
	return db, nil
}

type limitedFile struct {
	io.Reader
	f    *os.File
	name string
}

func (l *limitedFile) Read(p []byte) (int, error) {
	n, err := l.Reader.Read(p)
	if errors.Is(err, io.EOF) && l.Reader.(*io.LimitedReader).N == 0 {
		return n, fmt.Errorf("oci: image %s is larger than %d bytes", l.name, maxUserFileBytes)
	}
	return n, err
}

func (l *limitedFile) Close() error { return l.f.Close() }

// openInRoot opens name with root as the root of path resolution, so
// symlinks and ".." in a hostile image cannot lead outside it. It returns
// nil, nil when the file does not exist, and refuses anything but a regular
// file (a FIFO would block us, a device could be endless).
func openInRoot(root *os.File, name string) (*limitedFile, error) {
	h, err := pathrs.OpenatInRoot(root, name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
			return nil, nil
		}
		return nil, fmt.Errorf("oci: open image %s: %w", name, err)
	}
	defer h.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(h.Fd()), &st); err != nil {
		return nil, fmt.Errorf("oci: stat image %s: %w", name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("oci: image %s is not a regular file", name)
	}
	f, err := pathrs.Reopen(h, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("oci: open image %s: %w", name, err)
	}
	return &limitedFile{
		// One byte past the cap turns an oversized file into an error
		// instead of a silently truncated database.
		Reader: &io.LimitedReader{R: f, N: maxUserFileBytes + 1},
		f:      f,
		name:   name,
	}, nil
}
