package loader

// The XDP program is compiled by one pinned clang (see deploy/install-deps.sh) and the generated
// .go/.o files are committed, so `go build` needs no C toolchain. `make generate` re-runs this and
// CI fails if the result differs from what is committed.
//
//go:generate go tool bpf2go -cc clang-16 -strip llvm-strip-16 -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3 -fno-strict-aliasing" -type service -type service_key4 -type service_key6 -type port_services -type counters -type service_counters -type cookie_secret -type iface_config -type on_demand_rate -type on_demand_state -type family xsyn ../bpf/xsyn.c -- -I../bpf
