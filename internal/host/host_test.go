package host

import (
	"errors"
	"strings"
	"testing"
)

// A missing interface is ErrNoInterface, named, from every reader that looks one up: the one
// place the lookup is wrapped.
func TestNoInterface(t *testing.T) {
	const name = "xsyn-none0"
	_, linkErr := Link(name)
	_, addrsErr := Addrs(name)
	_, stackErr := LocalStack(name)
	for what, err := range map[string]error{"Link": linkErr, "Addrs": addrsErr, "LocalStack": stackErr} {
		if !errors.Is(err, ErrNoInterface) || !strings.Contains(err.Error(), `"`+name+`" in this network namespace (see `+"`ip link`"+`)`) {
			t.Errorf("%s(%q): %v; want ErrNoInterface naming it", what, name, err)
		}
	}
}
