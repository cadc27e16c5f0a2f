package main

// The benchmark's XDP programs (generator, sink, ceilings) are compiled like xsyn's own, by the
// pinned clang, and the generated .go/.o files are committed, so `go run ./bench` needs no C
// toolchain.
//
//go:generate go tool bpf2go -cc clang-16 -strip llvm-strip-16 -target bpfel -go-package main -cflags "-O2 -g -Wall -Werror -mcpu=v3 -fno-strict-aliasing" -type gen_config -type gen_state -type gen_counters -type sink_counters benchprogs bpf/bench.c -- -I../bpf
