// Package loader puts xsyn's data plane into the kernel and reads it back.
//
// It loads the XDP program (bpf/xsyn.c, compiled by bpf2go into xsyn_bpfel.{go,o}) and, where
// the kernel has the socket handoff, the TC program beside it; fills the maps from a validated
// spec.Spec (services, TCP options, the cookie secret, the interface's MAC); pins the maps and
// the links in one bpffs directory per interface and network namespace, built in a temporary
// directory and renamed into place; and attaches. Reconfiguration rewrites maps and an upgrade
// swaps the program with link.Update: xsyn is never detached to change.
//
// Writers of one network namespace serialise on a lock file (Lock, NetnsLock); observers
// (Open with readOnly, status, the exporter) open the pins read-only and never take it. What
// the running kernel lacks is a *FeatureError naming the feature and the kernel that has it;
// the probes (Probe, ProbeHandoff) find out before anything is attached.
package loader
