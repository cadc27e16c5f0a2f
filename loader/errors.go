package loader

import (
	"errors"
	"fmt"

	"github.com/xsyn-project/xsyn/internal/host"
)

// Sentinel errors, checked with errors.Is.
var (
	// ErrNotAttached: xsyn's program is not on the interface.
	ErrNotAttached = errors.New("xsyn is not attached")
	// ErrAlreadyAttached: xsyn's program is already on the interface (reconfigure it instead).
	ErrAlreadyAttached = errors.New("xsyn is already attached")
	// ErrForeignProgram: another XDP program occupies the interface; xsyn never replaces it.
	ErrForeignProgram = errors.New("another XDP program is attached")
	// ErrUnknownProgram: an XDP program that no pinned link of xsyn holds is on the interface,
	// and this process may not open it by id (that needs CAP_SYS_ADMIN) to see whose it is.
	ErrUnknownProgram = errors.New("cannot tell whose XDP program is attached")
	// ErrNoInterface: no such network interface in this network namespace (host.ErrNoInterface,
	// which looks interfaces up for every package).
	ErrNoInterface = host.ErrNoInterface
	// ErrFeatureMissing: the kernel lacks something the XDP path needs (see FeatureError).
	ErrFeatureMissing = errors.New("kernel feature missing")
	// ErrModeUnsupported: the requested attach mode cannot be used on the interface.
	ErrModeUnsupported = errors.New("attach mode not supported")
)

// FeatureError names a kernel feature the XDP fast path needs and the kernel version that has it.
// It wraps ErrFeatureMissing, so callers can fall back to netfilter-only protection.
type FeatureError struct {
	Feature string // e.g. "BPF helper bpf_tcp_raw_gen_syncookie_ipv4"
	Since   string // e.g. "Linux 6.0"
	Err     error  // what the probe saw
}

func (e *FeatureError) Error() string {
	return fmt.Sprintf("kernel lacks %s (added in %s): %v", e.Feature, e.Since, e.Err)
}

// Unwrap lets errors.Is(err, ErrFeatureMissing) and the probe's own error match.
func (e *FeatureError) Unwrap() []error { return []error{ErrFeatureMissing, e.Err} }
