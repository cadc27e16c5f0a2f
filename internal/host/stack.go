package host

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/xsyn-project/xsyn/spec"
)

// LocalStack reads what this namespace's TCP stack offers on iface: the interface MTU, and the
// window scale from the receive buffer limits (net.ipv4.tcp_rmem and net.core.rmem_max). A
// missing interface is ErrNoInterface.
func LocalStack(iface string) (spec.Stack, error) {
	l, err := Link(iface)
	if err != nil {
		return spec.Stack{}, err
	}
	rmem, err := os.ReadFile("/proc/sys/net/ipv4/tcp_rmem")
	if err != nil {
		return spec.Stack{}, fmt.Errorf("read tcp_rmem: %w", err)
	}
	f := strings.Fields(string(rmem))
	if len(f) != 3 {
		return spec.Stack{}, fmt.Errorf("read tcp_rmem: %q is not three numbers", rmem)
	}
	maxBuf, err := strconv.Atoi(f[2])
	if err != nil {
		return spec.Stack{}, fmt.Errorf("read tcp_rmem: %w", err)
	}
	if core, err := os.ReadFile("/proc/sys/net/core/rmem_max"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(core))); err == nil {
			maxBuf = max(maxBuf, n)
		}
	}
	return spec.Stack{MTU: l.Attrs().MTU, WScale: spec.WScaleForBuffer(maxBuf)}, nil
}

// Sysctl reads a sysctl of this network namespace ("net.ipv4.tcp_sack") from /proc/sys.
func Sysctl(key string) (string, error) {
	b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(key, ".", "/"))
	return strings.TrimSpace(string(b)), err
}
