package loader

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
)

// Probe checks that the running kernel has everything the XDP program uses. It returns nil,
// errors joining one *FeatureError per missing feature, or another error when it cannot tell
// (no permission to load BPF programs).
func Probe() error {
	errs, err := probeHelpers([]helper{
		{asm.FnTcpRawGenSyncookieIpv4, "bpf_tcp_raw_gen_syncookie_ipv4", "Linux 6.0"},
		{asm.FnTcpRawGenSyncookieIpv6, "bpf_tcp_raw_gen_syncookie_ipv6", "Linux 6.0"},
		{asm.FnTcpRawCheckSyncookieIpv4, "bpf_tcp_raw_check_syncookie_ipv4", "Linux 6.0"},
		{asm.FnTcpRawCheckSyncookieIpv6, "bpf_tcp_raw_check_syncookie_ipv6", "Linux 6.0"},
		{asm.FnXdpAdjustTail, "bpf_xdp_adjust_tail", "Linux 4.18"},
	})
	if err != nil {
		return err
	}

	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		return errors.Join(append(errs, &FeatureError{Feature: "kernel BTF (/sys/kernel/btf/vmlinux)", Since: "Linux 5.4 with CONFIG_DEBUG_INFO_BTF", Err: err})...)
	}
	for _, k := range []struct{ name, since string }{
		{"bpf_xdp_ct_lookup", "Linux 5.18 with CONFIG_NF_CONNTRACK"},
		{"bpf_ct_release", "Linux 5.18 with CONFIG_NF_CONNTRACK"},
	} {
		if _, err := findFunc(kernel, k.name); err != nil {
			errs = append(errs, &FeatureError{Feature: "conntrack kfunc " + k.name, Since: k.since, Err: err})
		}
	}
	// XDP through a BPF link (what keeps the program attached after the CLI exits).
	var xdpLink *btf.Struct
	if err := kernel.TypeByName("bpf_xdp_link", &xdpLink); err != nil {
		errs = append(errs, &FeatureError{Feature: "XDP BPF links", Since: "Linux 5.9", Err: err})
	}
	return errors.Join(errs...)
}

// findFunc looks a kfunc up in vmlinux BTF, then in nf_conntrack's module BTF where conntrack is
// a module. That module must be loaded: the conntrack rules of xsyn load it, which is why
// protect.Apply probes after installing them.
func findFunc(kernel *btf.Spec, name string) (*btf.Func, error) {
	var fn *btf.Func
	if err := kernel.TypeByName(name, &fn); err == nil {
		return fn, nil
	}
	mod, err := btf.LoadKernelModuleSpec("nf_conntrack")
	if err != nil {
		return nil, fmt.Errorf("%s is not in vmlinux BTF, and nf_conntrack has none (not loaded?): %w", name, err)
	}
	if err := mod.TypeByName(name, &fn); err != nil {
		return nil, fmt.Errorf("%s is in neither vmlinux nor nf_conntrack BTF: %w", name, err)
	}
	return fn, nil
}

// ProbeHandoff checks that the kernel can run the socket-handoff path: the kfunc that hands an
// ACK to a listener (Linux 6.9), tcx links to attach it (6.6), and the TAI clock and socket
// lookup in XDP. It returns nil, or errors joining one *FeatureError per missing feature, or
// another error when it cannot tell.
func ProbeHandoff() error {
	errs, err := probeHelpers([]helper{
		{asm.FnKtimeGetTaiNs, "bpf_ktime_get_tai_ns", "Linux 6.1"},
		{asm.FnSkcLookupTcp, "bpf_skc_lookup_tcp", "Linux 5.2"},
		{asm.FnSkRelease, "bpf_sk_release", "Linux 4.20"},
	})
	if err != nil {
		return err
	}
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		return errors.Join(append(errs, &FeatureError{Feature: "kernel BTF (/sys/kernel/btf/vmlinux)", Since: "Linux 5.4 with CONFIG_DEBUG_INFO_BTF", Err: err})...)
	}
	var fn *btf.Func
	if err := kernel.TypeByName("bpf_sk_assign_tcp_reqsk", &fn); err != nil {
		errs = append(errs, &FeatureError{Feature: "kfunc bpf_sk_assign_tcp_reqsk", Since: "Linux 6.9 with CONFIG_SYN_COOKIES", Err: err})
	}
	var tcx *btf.Struct
	if err := kernel.TypeByName("tcx_link", &tcx); err != nil {
		errs = append(errs, &FeatureError{Feature: "tcx BPF links", Since: "Linux 6.6", Err: err})
	}
	return errors.Join(errs...)
}

// helper is a BPF helper the XDP program calls, and the kernel that added it for XDP.
type helper struct {
	fn    asm.BuiltinFunc
	name  string
	since string
}

// probeHelpers returns one *FeatureError per helper the kernel lacks for XDP, or an error when it
// cannot tell: this process may not load BPF programs (capabilities, a seccomp filter without
// bpf(2)), and falling back to netfilter-only would hide that.
func probeHelpers(hs []helper) ([]error, error) {
	var errs []error
	for _, h := range hs {
		err := features.HaveProgramHelper(ebpf.XDP, h.fn)
		switch {
		case errors.Is(err, ebpf.ErrNotSupported):
			errs = append(errs, &FeatureError{Feature: "BPF helper " + h.name + " for XDP", Since: h.since, Err: err})
		case err != nil:
			return nil, fmt.Errorf("probe BPF helper %s: %w (loading the XDP program needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN, and bpf(2) allowed)", h.name, err)
		}
	}
	return errs, nil
}
