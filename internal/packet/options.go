package packet

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// TCP option kinds.
const (
	OptEOL       uint8 = 0
	OptNOP       uint8 = 1
	OptMSS       uint8 = 2
	OptWScale    uint8 = 3
	OptSACKPerm  uint8 = 4
	OptTimestamp uint8 = 8
)

// Option is one decoded TCP option.
type Option struct {
	Kind uint8
	Data []byte // the bytes after kind and length; nil for EOL and NOP
}

// Options concatenates encoded options, e.g. Options(MSS(1460), NOP(), WScale(7)).
func Options(opts ...[]byte) []byte { return slices.Concat(opts...) }

// EOL is the end-of-options-list option.
func EOL() []byte { return []byte{OptEOL} }

// NOP is the no-operation option.
func NOP() []byte { return []byte{OptNOP} }

// MSS is the maximum-segment-size option.
func MSS(mss uint16) []byte { return binary.BigEndian.AppendUint16([]byte{OptMSS, 4}, mss) }

// WScale is the window-scale option.
func WScale(shift uint8) []byte { return []byte{OptWScale, 3, shift} }

// SACKPerm is the SACK-permitted option.
func SACKPerm() []byte { return []byte{OptSACKPerm, 2} }

// Timestamp is the timestamps option.
func Timestamp(val, ecr uint32) []byte {
	b := binary.BigEndian.AppendUint32([]byte{OptTimestamp, 10}, val)
	return binary.BigEndian.AppendUint32(b, ecr)
}

// Raw is an option of any kind with the given data and a correct length byte; for malformed
// options write the bytes out instead.
func Raw(kind uint8, data ...byte) []byte { return append([]byte{kind, byte(2 + len(data))}, data...) }

// ParseOptions decodes raw TCP options in order. It stops after an EOL and fails on an option
// whose length byte is missing, below 2 or runs past the end, returning the options before it.
func ParseOptions(raw []byte) ([]Option, error) {
	var opts []Option
	for i := 0; i < len(raw); {
		kind := raw[i]
		switch kind {
		case OptEOL:
			return append(opts, Option{Kind: kind}), nil
		case OptNOP:
			opts = append(opts, Option{Kind: kind})
			i++
			continue
		}
		if i+1 >= len(raw) {
			return opts, fmt.Errorf("tcp option %d at %d: no length", kind, i)
		}
		n := int(raw[i+1])
		if n < 2 || i+n > len(raw) {
			return opts, fmt.Errorf("tcp option %d at %d: bad length %d", kind, i, n)
		}
		opts = append(opts, Option{Kind: kind, Data: raw[i+2 : i+n]})
		i += n
	}
	return opts, nil
}

// LastOption returns the last option of the given kind: the one the kernel would use.
func LastOption(opts []Option, kind uint8) (Option, bool) {
	for i := len(opts) - 1; i >= 0; i-- {
		if opts[i].Kind == kind {
			return opts[i], true
		}
	}
	return Option{}, false
}
