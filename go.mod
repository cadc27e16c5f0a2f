module github.com/xsyn-project/xsyn

go 1.26.8

tool github.com/cilium/ebpf/cmd/bpf2go

require github.com/cilium/ebpf v0.22.0

require golang.org/x/sys v0.48.0 // indirect
