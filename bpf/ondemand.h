/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * On-demand protection (handoff path, service.on_demand != 0): cookies only while a flood is on.
 *
 * Below the threshold, a service's SYNs pass to the stack and the listener answers them itself,
 * with every option its socket has (TCP Fast Open among them). At or above it, XDP answers them
 * with cookies, as it does for every other service. The rate is measured per CPU, without locks,
 * in 100 ms windows:
 *
 *   - every SYN to the service counts in its CPU's window (xsyn_od_rate, per CPU, by service id);
 *   - it switches on as soon as one CPU's count in the current window reaches a tenth of the
 *     threshold (a flood steered to one RX queue), or when a CPU starts a new window and finds
 *     the last window's count summed over all CPUs there (a flood spread by RSS);
 *   - it switches off only once the summed count of every window for OD_HOLD_NS has stayed
 *     below half the threshold: a flood at the threshold does not make it flap, and one that
 *     stops and starts again finds it still on.
 *
 * The state (xsyn_od_state, shared by the CPUs) is one word per service, read by every SYN and
 * written only when it switches (compare-and-swap, so each switch is counted once) and, while on,
 * once a window per CPU with the time of the last busy window.
 *
 * The decision is made by SYNs: a service whose flood ends in silence switches off with its next
 * SYN. `xsyn status` reads the same state and says so.
 *
 * ACKs while switching (handoff.h): a cookie xsyn sent is checked whatever the state, so a client
 * that got one just before the switch back connects; a client that got the listener's SYN-ACK
 * just before the switch to cookies has a request socket, which the socket lookup finds; and one
 * that got the listener's own cookie (its SYN queue overflowed) is passed to the stack, which
 * checks it.
 */
#ifndef XSYN_ONDEMAND_H
#define XSYN_ONDEMAND_H

#include "common.h"
#include "counters.h"
#include "maps.h"

#define OD_WINDOW_NS 100000000ULL   /* 100 ms */
#define OD_WINDOWS_PER_SECOND 10
#define OD_HOLD_NS 1000000000ULL    /* quiet this long before switching back to the listener */
/* XXX: CPUs above this number are left out of the sum at a window's end (their own count still
 * switches the service on). */
#define OD_MAX_CPUS 1024

/* One CPU's count of one service's SYNs. */
struct on_demand_rate {
	__u64 window; /* the 100 ms window count belongs to: coarse monotonic ns / OD_WINDOW_NS */
	__u32 count;  /* SYNs in it */
	__u32 prev;   /* SYNs in the window before it; 0 when this CPU had none there */
};

/* One service's switch. */
struct on_demand_state {
	__u64 last_busy; /* coarse monotonic ns of the last window at or above half the threshold */
	__u64 since;     /* coarse monotonic ns of the last switch */
	__u32 cookies;   /* bool: SYNs are answered with cookies */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct on_demand_rate);
} xsyn_od_rate SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct on_demand_state);
} xsyn_od_state SEC(".maps");

/* The SYNs of service id in the window before window, summed over CPUs. A global function, so
 * the verifier walks its loop once, on its own. Another CPU's values may be read while it
 * writes them: an estimate off by a SYN or two is harmless. */
__noinline __u64 od_last_window(__u32 id, __u64 window)
{
	__u64 sum = 0;
	__u32 cpu;

	for (cpu = 0; cpu < OD_MAX_CPUS; cpu++) {
		struct on_demand_rate *r = bpf_map_lookup_percpu_elem(&xsyn_od_rate, &id, cpu);

		if (!r)
			break; /* past the last CPU */
		if (r->window + 1 == window)
			sum += r->count;
		else if (r->window == window)
			sum += r->prev;
	}
	return sum;
}

/* Switches service id from from to to, once however many CPUs decide it at the same time. */
static __always_inline void od_switch(struct on_demand_state *st, __u32 id, __u32 from, __u32 to,
				      __u64 now)
{
	struct service_counters *s;

	if (to)
		st->last_busy = now; /* before the switch: off needs a second from here */
	if (__sync_val_compare_and_swap(&st->cookies, from, to) != from)
		return;
	st->since = now;
	s = bpf_map_lookup_elem(&xsyn_svc_counts, &id);
	if (s)
		s->on_demand_switches++;
}

/* At the start of a CPU's window: judge the window that just ended, over all CPUs. */
static __always_inline void od_judge(struct on_demand_state *st, __u32 id, __u64 window,
				     __u64 rate, __u64 now)
{
	__u64 syns = od_last_window(id, window) * OD_WINDOWS_PER_SECOND;

	if (!st->cookies) {
		if (syns >= rate)
			od_switch(st, id, 0, 1, now);
		return;
	}
	if (syns * 2 >= rate) {
		if (st->last_busy < now)
			st->last_busy = now;
		return;
	}
	if (now - st->last_busy >= OD_HOLD_NS)
		od_switch(st, id, 1, 0, now);
}

/* Counts a SYN to an on-demand service and says whether it gets a cookie (true) or goes to the
 * listener (false). */
static __always_inline bool on_demand_cookies(const struct service *svc)
{
	__u32 id = svc->id;
	__u64 rate = svc->on_demand;
	__u64 now = bpf_ktime_get_coarse_ns();
	__u64 window = now / OD_WINDOW_NS;
	struct on_demand_rate *r = bpf_map_lookup_elem(&xsyn_od_rate, &id);
	struct on_demand_state *st = bpf_map_lookup_elem(&xsyn_od_state, &id);

	if (!r || !st)
		return true; /* cannot happen: id < MAX_SERVICES; cookies are the safe answer */
	if (r->window != window) {
		r->prev = r->window + 1 == window ? r->count : 0;
		r->window = window;
		r->count = 0;
		od_judge(st, id, window, rate, now);
	}
	r->count++;
	if (!st->cookies && (__u64)r->count * OD_WINDOWS_PER_SECOND >= rate)
		od_switch(st, id, 0, 1, now);
	return st->cookies;
}

#endif /* XSYN_ONDEMAND_H */
