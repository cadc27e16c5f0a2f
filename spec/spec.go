// Package spec is the validated model of what xsyn protects and how. It is the single source both
// renderers read: the loader turns it into XDP map contents and the rules package into netfilter
// rules, so the SYN-ACK sent from XDP and the SYNPROXY that completes the handshake always agree
// on MSS, window scale, SACK and timestamps.
package spec

import (
	"errors"
	"fmt"
	"net/netip"
)

// Family is an IP version.
type Family int

// The families xsyn protects.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "ipv4"
	case IPv6:
		return "ipv6"
	}
	return fmt.Sprintf("family(%d)", int(f))
}

// AnyAddr is the prefix matching every destination of the family.
func (f Family) AnyAddr() netip.Prefix {
	if f == IPv6 {
		return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	}
	return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
}

// Limits of the model; MaxServices matches MAX_SERVICES in bpf/maps.h.
const (
	MaxServices = 4096
	MaxWScale   = 14  // RFC 7323
	MinMSS      = 536 // RFC 9293 default MSS; smaller values only help attackers
	MaxMSS      = 65495
)

// TCPOptions are the options offered in the SYN-ACK, by XDP and by SYNPROXY alike. They must
// match what the protected server itself would offer: SYNPROXY opens the real connection with
// the options the client accepted from us.
type TCPOptions struct {
	MSS        uint16 // maximum segment size we announce
	WScale     uint8  // our window scale shift (offered when the client offers one)
	SACK       bool   // SACK-permitted (needs timestamps to be carried in the cookie)
	Timestamps bool   // timestamps; without them window scaling and SACK cannot be offered
	ECN        bool   // accept ECN negotiation (needs timestamps)
}

// DefaultOptions are FireHOL's SYNPROXY defaults (--sack-perm --timestamp --wscale 7 --mss 1460),
// with the MSS of a 1500-byte MTU for the family.
func DefaultOptions(f Family) TCPOptions {
	return TCPOptions{MSS: DefaultMSS(f), WScale: 7, SACK: true, Timestamps: true}
}

// DefaultMSS is the MSS of a 1500-byte Ethernet MTU.
func DefaultMSS(f Family) uint16 {
	if f == IPv6 {
		return 1440
	}
	return 1460
}

// DefaultTTL is Linux's default IPv4 TTL and IPv6 hop limit, which SYNPROXY also uses.
const DefaultTTL = 64

// Service is one protected (family, destination prefix, destination port).
type Service struct {
	Family  Family
	Dst     netip.Prefix // masked; the family's AnyAddr for every address
	Port    uint16
	Options TCPOptions
	TTL     uint8 // IPv4 TTL / IPv6 hop limit of the SYN-ACK
	// Handoff: the socket-handoff path (xsyn's cookie, ACK handed to the listener); else
	// SYNPROXY's (the kernel's cookie). See Path.
	Handoff bool
	// LocalOnly: only this host's own addresses (an input statement without dst); XDP leaves
	// SYNs and connections this host routes to the stack.
	LocalOnly bool
	// OnDemand: handoff only, the SYN rate (a second) from which XDP answers with cookies;
	// below it the listener answers itself. 0: cookies always. See OnDemand in ondemand.go.
	OnDemand uint32
}

func (s Service) String() string {
	return fmt.Sprintf("%s %s port %d", s.Family, s.Dst, s.Port)
}

// Spec is everything xsyn protects on one interface. Statements are what netfilter installs
// (package rules); Services are the XDP view of them (package loader), derived by Compile. Build
// a Spec with Compile (or FromServices, Simple.Build, Config.For), never by hand, so the two
// views cannot disagree.
type Spec struct {
	Settings   Settings
	Statements []Statement
	Services   []Service
	// CookieKey is the handoff path's cookie secret, when one was given (cookie-secret-file);
	// nil keeps the attached program's, or makes a random one at the first attach.
	CookieKey *CookieKey
}

// Validation errors, checked with errors.Is.
var (
	ErrNoServices = errors.New("nothing to protect: give at least one port")
	ErrInvalid    = errors.New("invalid service")
)

// Validate checks the settings and every statement and service, and that no two services claim
// the same destination.
func (s Spec) Validate() error {
	if len(s.Services) == 0 && len(s.Statements) == 0 {
		return ErrNoServices
	}
	if len(s.Services) > MaxServices {
		return fmt.Errorf("%w: %d services, at most %d fit in the XDP maps", ErrInvalid, len(s.Services), MaxServices)
	}
	if len(s.Statements) > 0 {
		if err := s.Settings.Validate(); err != nil {
			return err
		}
	}
	for _, st := range s.Statements {
		if err := st.Validate(s.Settings); err != nil {
			return err
		}
	}
	type key struct {
		dst  netip.Prefix
		port uint16
	}
	seen := make(map[key]bool, len(s.Services))
	for _, svc := range s.Services {
		if err := svc.Validate(); err != nil {
			return err
		}
		k := key{svc.Dst, svc.Port}
		if seen[k] {
			return fmt.Errorf("%w: %s is given twice", ErrInvalid, svc)
		}
		seen[k] = true
	}
	return nil
}

// problem says what is wrong with the options, "" if nothing.
func (o TCPOptions) problem() string {
	if o.MSS < MinMSS || o.MSS > MaxMSS {
		return fmt.Sprintf("mss %d is outside %d-%d", o.MSS, MinMSS, MaxMSS)
	}
	if o.WScale > MaxWScale {
		return fmt.Sprintf("wscale %d is above %d", o.WScale, MaxWScale)
	}
	return ""
}

// Validate checks one service.
func (s Service) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %s: %s", ErrInvalid, s, fmt.Sprintf(format, args...))
	}
	switch s.Family {
	case IPv4, IPv6:
	default:
		return bad("family must be 4 or 6")
	}
	if !s.Dst.IsValid() {
		return bad("no destination prefix")
	}
	if s.Dst.Addr().Is4() != (s.Family == IPv4) || s.Dst.Addr().Is4In6() {
		return bad("destination %s is not an %s prefix", s.Dst, s.Family)
	}
	if s.Dst != s.Dst.Masked() {
		return bad("destination %s has host bits set (did you mean %s?)", s.Dst, s.Dst.Masked())
	}
	if s.Port == 0 {
		return bad("port must be 1-65535")
	}
	if msg := s.Options.problem(); msg != "" {
		return bad("%s", msg)
	}
	if s.TTL == 0 {
		return bad("ttl must be 1-255")
	}
	if s.OnDemand != 0 && !s.Handoff {
		return bad("%s", onDemandSynproxy)
	}
	if s.OnDemand > MaxOnDemand {
		return bad("on-demand %d is above %d SYNs a second", s.OnDemand, MaxOnDemand)
	}
	return nil
}

// ByFamily returns the services of one family, in spec order.
func (s Spec) ByFamily(f Family) []Service {
	var out []Service
	for _, svc := range s.Services {
		if svc.Family == f {
			out = append(out, svc)
		}
	}
	return out
}
