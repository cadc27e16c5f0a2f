package loader

import (
	"fmt"
	"reflect"
	"sync"

	"github.com/cilium/ebpf/btf"
)

// CounterField is one verdict counter under its C field name (bpf/counters.h), which is also its
// metric and JSON name: "synack_sent", "pass__not_protected", "drop__no_conn", ...
type CounterField struct {
	Name  string
	Value uint64
}

var counterNames = sync.OnceValues(func() ([]string, error) {
	cs, err := loadXsyn()
	if err != nil {
		return nil, err
	}
	var st *btf.Struct
	if err := cs.Types.TypeByName("counters", &st); err != nil {
		return nil, fmt.Errorf("find struct counters in program BTF: %w", err)
	}
	names := make([]string, len(st.Members))
	for i, m := range st.Members {
		names[i] = m.Name
	}
	return names, nil
})

// Fields lists c's counters with their C names, in declaration order. The Go struct is generated
// from the same BTF, so field i of one is member i of the other.
func Fields(c Counters) []CounterField {
	names, err := counterNames()
	v := reflect.ValueOf(c)
	var out []CounterField
	n := 0
	for i := range v.NumField() {
		f := v.Field(i)
		if f.Kind() != reflect.Uint64 {
			continue
		}
		name := v.Type().Field(i).Name
		if err == nil && n < len(names) {
			name = names[n]
		}
		out = append(out, CounterField{Name: name, Value: f.Uint()})
		n++
	}
	return out
}
