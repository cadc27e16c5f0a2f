package spec

import "fmt"

// LoopbackPolicy is how xsyn treats traffic on the loopback interface, as FireHOL's
// FIREHOL_TRUST_LOOPBACK.
type LoopbackPolicy int

// The loopback policies.
const (
	// LoopbackStrict accepts on lo only traffic between loopback addresses (and xsyn's own
	// marked packets), and drops packets for loopback addresses arriving on any other
	// interface. The only policy REDIRECT accepts.
	LoopbackStrict LoopbackPolicy = iota
	// LoopbackLoose accepts everything on lo.
	LoopbackLoose
	// LoopbackNone installs no loopback rules: the rest of the firewall decides.
	LoopbackNone
)

func (p LoopbackPolicy) String() string {
	switch p {
	case LoopbackLoose:
		return "loose"
	case LoopbackNone:
		return "none"
	}
	return "strict"
}

// ParseLoopback parses a loopback policy; FireHOL's "no" is "none".
func ParseLoopback(s string) (LoopbackPolicy, error) {
	switch s {
	case "strict":
		return LoopbackStrict, nil
	case "loose", "1", "yes":
		return LoopbackLoose, nil
	case "none", "no", "0":
		return LoopbackNone, nil
	}
	return 0, fmt.Errorf("%w: loopback policy %q: expected strict, loose or none", ErrInvalid, s)
}

// Settings are the namespace-wide choices of a configuration.
type Settings struct {
	// Mark and MarkMask are the packet mark bits xsyn sets on the SYN that SYNPROXY sends
	// towards the server, so that only those packets pass xsyn's isolation rules.
	Mark, MarkMask uint32
	Loopback       LoopbackPolicy
	// CookieSecretFile is the file of the handoff path's cookie secret (config
	// `cookie-secret-file`, flag --cookie-secret-file); "" for none. It is only named here:
	// attach reads it (ReadCookieKey) into Spec.CookieKey.
	CookieSecretFile string
}

// DefaultSettings: mark bit 0x20000000 (FireHOL's marks use the low bits), strict loopback.
func DefaultSettings() Settings {
	return Settings{Mark: 0x20000000, MarkMask: 0x20000000, Loopback: LoopbackStrict}
}

// MarkString is the mark as iptables writes it: 0x20000000/0x20000000.
func (s Settings) MarkString() string {
	return fmt.Sprintf("0x%x/0x%x", s.Mark, s.MarkMask)
}

// Validate checks the settings on their own.
func (s Settings) Validate() error {
	if s.MarkMask == 0 {
		return fmt.Errorf("%w: mark mask is 0; xsyn needs at least one mark bit of its own", ErrInvalid)
	}
	if s.Mark&^s.MarkMask != 0 || s.Mark == 0 {
		return fmt.Errorf("%w: mark 0x%x must be non-zero and inside its mask 0x%x", ErrInvalid, s.Mark, s.MarkMask)
	}
	return nil
}
