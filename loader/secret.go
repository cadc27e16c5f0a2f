package loader

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xsyn-project/xsyn/spec"
)

// CookieSlot is the lifetime unit of the handoff path's cookies (COOKIE_SLOT_NS in bpf/cookie.h):
// an ACK is checked against the slot it arrives in and the one before.
const CookieSlot = time.Minute

// taiNow reads CLOCK_TAI, the clock the XDP program takes its slots from
// (bpf_ktime_get_tai_ns).
func taiNow() time.Time {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_TAI, &ts); err != nil {
		return time.Now()
	}
	return time.Unix(ts.Unix())
}

func slotOf(t time.Time) uint32 { return uint32(t.UnixNano() / int64(CookieSlot)) }

// keyWords is the key as the program reads it: two little-endian 64-bit words (SipHash's key
// bytes in order).
func keyWords(k spec.CookieKey) [2]uint64 {
	return [2]uint64{binary.LittleEndian.Uint64(k[:8]), binary.LittleEndian.Uint64(k[8:])}
}

// setSecret writes the handoff path's cookie key. nil keeps the current key, or makes a random
// one if there is none yet (a fresh program). A different key rotates: the old one stays valid
// for the cookies already out there, until the slot after the next has begun, so no handshake
// in flight fails.
func (c configMaps) setSecret(key *spec.CookieKey) error {
	if c.secret == nil {
		return nil // a program built before the handoff path; nothing uses a key
	}
	var cur xsynCookieSecret
	if err := c.secret.Lookup(uint32(0), &cur); err != nil {
		return fmt.Errorf("read cookie secret: %w", err)
	}
	fresh := cur.Key == [2]uint64{}
	next := cur
	switch {
	case key == nil && !fresh:
		return nil
	case key == nil:
		var k spec.CookieKey
		if _, err := rand.Read(k[:]); err != nil {
			return fmt.Errorf("make cookie secret: %w", err)
		}
		next.Key = keyWords(k)
	case keyWords(*key) == cur.Key:
		return nil
	default:
		next.Key = keyWords(*key)
		if !fresh {
			next.PrevKey = cur.Key
			next.PrevUntil = slotOf(taiNow()) + uint32(cur.SlotShift) + 2
		}
	}
	if err := c.secret.Put(uint32(0), next); err != nil {
		return fmt.Errorf("write cookie secret: %w", err)
	}
	return nil
}

// shiftClock moves the program's idea of the time by slots (tests: expired cookies, rotations).
func (c configMaps) shiftClock(slots int32) error {
	var cur xsynCookieSecret
	if err := c.secret.Lookup(uint32(0), &cur); err != nil {
		return fmt.Errorf("read cookie secret: %w", err)
	}
	cur.SlotShift = slots
	return c.secret.Put(uint32(0), cur)
}
