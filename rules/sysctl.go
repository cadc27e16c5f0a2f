package rules

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Sysctl reads and writes the sysctls of the caller's network namespace.
type Sysctl interface {
	Get(key string) (string, error)
	Set(key, value string) error
}

// ProcSys is the Sysctl of the files under Root, normally /proc/sys. The files under
// /proc/sys/net belong to the network namespace of the thread that opens them.
type ProcSys struct {
	Root string
}

func (p ProcSys) path(key string) string {
	return filepath.Join(p.Root, sysctlFile(key))
}

// sysctlFile turns a dotted key into its path under /proc/sys the way sysctl(8) does: a '.'
// separates directories, a '/' stands for a '.' inside a name (net.ipv4.conf.eth0/100.rp_filter
// is net/ipv4/conf/eth0.100/rp_filter).
func sysctlFile(key string) string { return keyToFile.Replace(key) }

var keyToFile = strings.NewReplacer(".", "/", "/", ".")

// Get returns the value of key without its trailing newline. Errors are *os.PathError, which
// name the file.
func (p ProcSys) Get(key string) (string, error) {
	b, err := os.ReadFile(p.path(key))
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\n"), nil
}

// Set writes value to key. Errors are *os.PathError, which name the file.
func (p ProcSys) Set(key, value string) error {
	// No O_CREATE: a sysctl that does not exist is an error, not a new file.
	f, err := os.OpenFile(p.path(key), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// A saved sysctl is a rule of SavedChain that matches nothing in particular and is never
// reached: -A XSYN-SAVED -m comment --comment "sysctl net.ipv4.tcp_syncookies=2". The comment
// is the whole record, so it survives iptables-save/restore and both backends alike.
const savedPrefix = "sysctl "

// maxSavedValue keeps the record well inside the comment match's 256 bytes.
const maxSavedValue = 160

func savedArgs(key, value string) []string {
	return []string{"-m", "comment", "--comment", savedPrefix + key + "=" + value}
}

// parseSaved reads a line of `iptables -S XSYN-SAVED`. Lines that are no record (-N, -P) give
// ok false; a record that cannot be read is an error, so a value is never silently lost.
func parseSaved(line string) (key, value string, ok bool, err error) {
	args, err := SplitArgs(line)
	if err != nil {
		return "", "", false, err
	}
	if len(args) < 2 || args[0] != "-A" || args[1] != SavedChain {
		return "", "", false, nil
	}
	args = args[2:]
	if len(args) != 4 || args[0] != "-m" || args[1] != "comment" || args[2] != "--comment" {
		return "", "", false, fmt.Errorf("parse saved sysctl %q: not an xsyn record", line)
	}
	rec, isSysctl := strings.CutPrefix(args[3], savedPrefix)
	key, value, hasEq := strings.Cut(rec, "=")
	if !isSysctl || !hasEq {
		return "", "", false, fmt.Errorf("parse saved sysctl %q: want %q", line, savedPrefix+"KEY=VALUE")
	}
	if err := checkSysctl(key, value); err != nil {
		return "", "", false, fmt.Errorf("parse saved sysctl %q: %w", line, err)
	}
	return key, value, true, nil
}

// checkSysctl accepts keys and values that a saved record can hold and give back unchanged.
func checkSysctl(key, value string) error {
	if key == "" || strings.Trim(key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-/") != "" {
		return fmt.Errorf("sysctl key %q: want letters, digits, '_', '-', '/' (a '.' in an interface name) and '.'", key)
	}
	// Each part is one file name under /proc/sys: never empty, never "." or ".." (a part of
	// slashes only), so a key cannot reach outside its directory.
	parts := strings.Split(key, ".")
	if len(parts) < 2 || slices.ContainsFunc(parts, func(part string) bool { return strings.Trim(part, "/") == "" }) {
		return fmt.Errorf("sysctl key %q: want at least two parts separated by '.', none empty or made of '/' only", key)
	}
	if len(value) > maxSavedValue || strings.ContainsAny(value, "\n\"\\'") {
		return fmt.Errorf("sysctl %s value %q cannot be saved in an iptables comment", key, value)
	}
	return nil
}
