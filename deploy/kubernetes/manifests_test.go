// Package kubernetes holds xsyn's Kubernetes manifests; this test keeps them true to xsyn. It
// decodes every manifest strictly into the API types, then checks what they mean against xsyn
// itself: its configuration parser, its CLI (built from this tree), its paths, and the
// capability table of README.md. It needs no cluster, no root and no network.
package kubernetes

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	sigsjson "sigs.k8s.io/json"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/spec"
)

// What the manifests and the image agree on.
const (
	entrypoint    = "/usr/local/bin/xsyn-entrypoint" // Dockerfile's ENTRYPOINT, the containers' command
	entrypointSrc = "entrypoint.sh"
	xtablesLock   = "/run/xtables.lock"
	hostProcNet   = "/host/proc/sys/net"
	podIPStandIn  = "192.0.2.10" // status.podIP when command lines are run
	defaultPath   = "/metrics"   // xsyn serve --web.telemetry-path default
)

// Files that kustomization.yaml leaves out on purpose.
var notInKustomization = map[string]string{
	"podmonitor.yaml":        "needs the Prometheus Operator's CRD",
	"cleanup-daemonset.yaml": "removes the protection",
}

// ---------------------------------------------------------------------------------------------
// Loading: one resource per document, decoded strictly into its type.

// kustomization is the part of kustomize's Kustomization these manifests use. A field it does
// not know fails the strict decoding: add it here when kustomization.yaml needs one.
type kustomization struct {
	metav1.TypeMeta `json:",inline"`
	Namespace       string           `json:"namespace,omitempty"`
	Resources       []string         `json:"resources,omitempty"`
	Images          []kustomizeImage `json:"images,omitempty"`
}

type kustomizeImage struct {
	Name    string `json:"name"`
	NewName string `json:"newName,omitempty"`
	NewTag  string `json:"newTag,omitempty"`
	Digest  string `json:"digest,omitempty"`
}

// newObject returns the typed object of an apiVersion and kind, nil for any other.
func newObject(apiVersion, kind string) any {
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		return new(corev1.Namespace)
	case "v1 ConfigMap":
		return new(corev1.ConfigMap)
	case "v1 Service":
		return new(corev1.Service)
	case "apps/v1 DaemonSet":
		return new(appsv1.DaemonSet)
	case "monitoring.coreos.com/v1 PodMonitor":
		return new(monitoringv1.PodMonitor)
	case "kustomize.config.k8s.io/v1beta1 Kustomization":
		return new(kustomization)
	}
	return nil
}

// resource is one decoded document.
type resource struct {
	file string
	doc  int // 1-based, within file
	kind string
	meta metav1.ObjectMeta
	obj  any
}

// at names a field of the resource in an error: file, document, kind/name, field path.
func (r resource) at(field string) string {
	name := r.meta.Name
	if r.kind == "Kustomization" {
		name = "-"
	}
	return fmt.Sprintf("%s (document %d, %s %s): %s", r.file, r.doc, r.kind, name, field)
}

type manifests struct {
	dir        string
	files      []string
	resources  []resource
	configMaps map[string]*corev1.ConfigMap // by namespace/name
}

// docSep splits a file into documents the way kubectl does: a line of three dashes.
var docSep = regexp.MustCompile(`(?m)^---[ \t]*\r?$`)

// splitDocuments returns the documents of a file that hold more than blanks and comments.
func splitDocuments(b []byte) [][]byte {
	var out [][]byte
	for _, d := range docSep.Split(string(b), -1) {
		for _, line := range strings.Split(d, "\n") {
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
				out = append(out, []byte(d))
				break
			}
		}
	}
	return out
}

// decodeStrict decodes one YAML document into obj as the API server does in strict mode:
// duplicate keys, unknown fields and fields in the wrong case are errors.
func decodeStrict(doc []byte, obj any) error {
	js, err := sigsyaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := sigsjson.UnmarshalStrict(js, obj)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// decodeDocument finds the document's type and decodes it into that type.
func decodeDocument(doc []byte) (any, error) {
	js, err := sigsyaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, err
	}
	var tm metav1.TypeMeta
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(js, &tm); err != nil {
		return nil, err
	}
	obj := newObject(tm.APIVersion, tm.Kind)
	if obj == nil {
		return nil, fmt.Errorf("apiVersion %q kind %q: not a kind these manifests use (one resource per document)", tm.APIVersion, tm.Kind)
	}
	if err := decodeStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s %s: %w", tm.APIVersion, tm.Kind, err)
	}
	return obj, nil
}

var (
	loadOnce sync.Once
	loaded   *manifests
	loadErrs []string
)

// load reads and decodes every *.yaml file of this directory once; the tests share the result.
func load(t *testing.T) *manifests {
	t.Helper()
	loadOnce.Do(func() {
		m := &manifests{dir: ".", configMaps: map[string]*corev1.ConfigMap{}}
		m.files, _ = filepath.Glob("*.yaml")
		sort.Strings(m.files)
		for _, f := range m.files {
			b, err := os.ReadFile(f)
			if err != nil {
				loadErrs = append(loadErrs, err.Error())
				continue
			}
			docs := splitDocuments(b)
			if len(docs) == 0 {
				loadErrs = append(loadErrs, f+": no document")
			}
			for i, d := range docs {
				obj, err := decodeDocument(d)
				if err != nil {
					loadErrs = append(loadErrs, fmt.Sprintf("%s (document %d): %v", f, i+1, err))
					continue
				}
				r := resource{file: f, doc: i + 1, obj: obj}
				switch o := obj.(type) {
				case *corev1.Namespace:
					r.kind, r.meta = "Namespace", o.ObjectMeta
				case *corev1.ConfigMap:
					r.kind, r.meta = "ConfigMap", o.ObjectMeta
					m.configMaps[o.Namespace+"/"+o.Name] = o
				case *corev1.Service:
					r.kind, r.meta = "Service", o.ObjectMeta
				case *appsv1.DaemonSet:
					r.kind, r.meta = "DaemonSet", o.ObjectMeta
				case *monitoringv1.PodMonitor:
					r.kind, r.meta = "PodMonitor", o.ObjectMeta
				case *kustomization:
					r.kind = "Kustomization"
				}
				m.resources = append(m.resources, r)
			}
		}
		loaded = m
	})
	if len(loadErrs) > 0 {
		t.Fatalf("manifests do not decode strictly:\n%s", strings.Join(loadErrs, "\n"))
	}
	return loaded
}

func (m *manifests) all(kind string) []resource {
	var out []resource
	for _, r := range m.resources {
		if r.kind == kind {
			out = append(out, r)
		}
	}
	return out
}

// ---------------------------------------------------------------------------------------------
// The decoder itself.

// TestDecoderIsStrict proves that the checks below run on what the API server would read: each
// of these documents must be refused.
func TestDecoderIsStrict(t *testing.T) {
	bad := map[string]string{
		"unknown field":       "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndatta:\n  a: b\n",
		"field in wrong case": "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: x\nspec:\n  template:\n    spec:\n      hostnetwork: true\n",
		"duplicate key":       "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  name: y\n",
		"unknown kind":        "apiVersion: v1\nkind: Secrett\nmetadata:\n  name: x\n",
		"list of resources":   "apiVersion: v1\nkind: List\nitems: []\n",
		"wrong type":          "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: [1]\n",
		"unknown podmonitor field": "apiVersion: monitoring.coreos.com/v1\nkind: PodMonitor\nmetadata:\n  name: x\n" +
			"spec:\n  selector: {}\n  podMetricsEndpoints:\n    - port: metrics\n      pathh: /metrics\n",
	}
	for name, doc := range bad {
		if _, err := decodeDocument([]byte(doc)); err == nil {
			t.Errorf("%s: decoded without error:\n%s", name, doc)
		} else {
			t.Logf("%s: refused: %v", name, err)
		}
	}
	docs := splitDocuments([]byte("# a comment\n---\napiVersion: v1\nkind: Namespace\n---\n# only a comment\n---\napiVersion: v1\nkind: Namespace\n"))
	if len(docs) != 2 {
		t.Errorf("splitDocuments: got %d documents, want 2", len(docs))
	}
}

// ---------------------------------------------------------------------------------------------
// The resources as a whole.

func TestResources(t *testing.T) {
	m := load(t)
	for _, kind := range []string{"Namespace", "ConfigMap", "DaemonSet", "PodMonitor", "Kustomization"} {
		if len(m.all(kind)) == 0 {
			t.Errorf("no %s in %s", kind, strings.Join(m.files, ", "))
		}
	}
	nss := m.all("Namespace")
	if len(nss) != 1 {
		t.Fatalf("want one Namespace, got %d", len(nss))
	}
	ns := nss[0]
	if errs := validation.IsDNS1123Label(ns.meta.Name); len(errs) > 0 {
		t.Errorf("%s: %s", ns.at("metadata.name"), strings.Join(errs, "; "))
	}
	if got := ns.meta.Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
		t.Errorf("%s: %q, want privileged: hostNetwork, hostPath and CAP_SYS_ADMIN are refused below that level",
			ns.at(`metadata.labels["pod-security.kubernetes.io/enforce"]`), got)
	}
	for _, r := range m.resources {
		switch r.kind {
		case "Namespace", "Kustomization":
			continue
		}
		if r.meta.Namespace != ns.meta.Name {
			t.Errorf("%s: %q, want %q (namespace.yaml)", r.at("metadata.namespace"), r.meta.Namespace, ns.meta.Name)
		}
		if errs := validation.IsDNS1123Subdomain(r.meta.Name); len(errs) > 0 {
			t.Errorf("%s: %s", r.at("metadata.name"), strings.Join(errs, "; "))
		}
		for k, v := range r.meta.Labels {
			if errs := append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...); len(errs) > 0 {
				t.Errorf("%s: %s", r.at("metadata.labels["+k+"]"), strings.Join(errs, "; "))
			}
		}
	}
}

func TestKustomization(t *testing.T) {
	m := load(t)
	for _, r := range m.all("Kustomization") {
		k := r.obj.(*kustomization)
		ns := m.all("Namespace")[0].meta.Name
		if k.Namespace != ns {
			t.Errorf("%s: %q, want %q", r.at("namespace"), k.Namespace, ns)
		}
		listed := map[string]bool{}
		for i, f := range k.Resources {
			listed[f] = true
			if !slices.Contains(m.files, f) {
				t.Errorf("%s: %q is not a manifest of this directory", r.at(fmt.Sprintf("resources[%d]", i)), f)
			}
		}
		for _, f := range m.files {
			if f == r.file || listed[f] {
				continue
			}
			if _, ok := notInKustomization[f]; !ok {
				t.Errorf("%s: %s is neither listed nor one of the files left out on purpose (%v)", r.at("resources"), f, notInKustomization)
			}
		}
		for f := range notInKustomization {
			if listed[f] {
				t.Errorf("%s: lists %s, which is applied on its own (%s)", r.at("resources"), f, notInKustomization[f])
			}
		}
		// Every image the manifests run is one that `kustomize edit set image` rewrites.
		for _, ds := range m.all("DaemonSet") {
			for _, c := range containers(ds) {
				name, _, _ := strings.Cut(c.c.Image, ":")
				if !slices.ContainsFunc(k.Images, func(i kustomizeImage) bool { return i.Name == name }) {
					t.Errorf("%s: image %q is not named in %s images", ds.at(c.path+".image"), c.c.Image, r.file)
				}
			}
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Pods.

// container is a container of a DaemonSet's pod template with its field path.
type container struct {
	c    *corev1.Container
	path string // spec.template.spec.initContainers[attach]
	init bool
}

func containers(r resource) []container {
	ps := &r.obj.(*appsv1.DaemonSet).Spec.Template.Spec
	var out []container
	for i := range ps.InitContainers {
		c := &ps.InitContainers[i]
		out = append(out, container{c, "spec.template.spec.initContainers[" + c.Name + "]", true})
	}
	for i := range ps.Containers {
		c := &ps.Containers[i]
		out = append(out, container{c, "spec.template.spec.containers[" + c.Name + "]", false})
	}
	return out
}

// xsynArgs returns the xsyn command line a container runs (args after "xsyn"), or nil.
func xsynArgs(c *corev1.Container) []string {
	if len(c.Command) == 1 && c.Command[0] == entrypoint && len(c.Args) >= 2 && c.Args[0] == "xsyn" {
		return c.Args[1:]
	}
	return nil
}

// writes says whether a container changes xsyn's state (pins, rules, sysctls).
func writes(c *corev1.Container) bool {
	a := xsynArgs(c)
	return len(a) > 0 && (a[0] == "attach" || a[0] == "detach")
}

func TestPodSpec(t *testing.T) {
	m := load(t)
	for _, r := range m.all("DaemonSet") {
		ds := r.obj.(*appsv1.DaemonSet)
		ps := &ds.Spec.Template.Spec
		sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(ds.Spec.Template.Labels)) {
			t.Errorf("%s: %v does not select the pod template's labels %v (%v)", r.at("spec.selector"), ds.Spec.Selector, ds.Spec.Template.Labels, err)
		}
		if !ps.HostNetwork {
			t.Errorf("%s: false: xsyn protects the node's interface, in the node's network namespace", r.at("spec.template.spec.hostNetwork"))
		}
		if ps.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
			t.Errorf("%s: %q, want %q", r.at("spec.template.spec.dnsPolicy"), ps.DNSPolicy, corev1.DNSClusterFirstWithHostNet)
		}
		if ps.PriorityClassName != "system-node-critical" {
			t.Errorf("%s: %q, want system-node-critical", r.at("spec.template.spec.priorityClassName"), ps.PriorityClassName)
		}
		if !slices.ContainsFunc(ps.Tolerations, func(tl corev1.Toleration) bool {
			return tl.Key == "" && tl.Operator == corev1.TolerationOpExists && tl.Effect == ""
		}) {
			t.Errorf("%s: %v: want {operator: Exists} (every taint: it protects every node)", r.at("spec.template.spec.tolerations"), ps.Tolerations)
		}
		if ds.Spec.UpdateStrategy.Type != "" && ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType {
			t.Errorf("%s: %q, want RollingUpdate", r.at("spec.updateStrategy.type"), ds.Spec.UpdateStrategy.Type)
		}
		if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
			t.Errorf("%s: want false: xsyn never talks to the API server", r.at("spec.template.spec.automountServiceAccountToken"))
		}
		checkVolumes(t, m, r, ps)
		for _, c := range containers(r) {
			checkEnv(t, m, r, c)
			checkSecurity(t, r, ps, c)
			checkResources(t, r, c)
			if errs := validation.IsDNS1123Label(c.c.Name); len(errs) > 0 {
				t.Errorf("%s: %s", r.at(c.path+".name"), strings.Join(errs, "; "))
			}
		}
	}
}

// checkVolumes: volume names unique and valid, every mount names a volume, every ConfigMap
// volume names a ConfigMap and keys that exist.
func checkVolumes(t *testing.T, m *manifests, r resource, ps *corev1.PodSpec) {
	vols := map[string]*corev1.Volume{}
	for i := range ps.Volumes {
		v := &ps.Volumes[i]
		at := r.at("spec.template.spec.volumes[" + v.Name + "]")
		if vols[v.Name] != nil {
			t.Errorf("%s: defined twice", at)
		}
		vols[v.Name] = v
		if errs := validation.IsDNS1123Label(v.Name); len(errs) > 0 {
			t.Errorf("%s: %s", at, strings.Join(errs, "; "))
		}
		if cmv := v.ConfigMap; cmv != nil {
			cm := m.configMaps[r.meta.Namespace+"/"+cmv.Name]
			if cm == nil {
				t.Errorf("%s.configMap.name: no ConfigMap %q in namespace %s", at, cmv.Name, r.meta.Namespace)
				continue
			}
			for _, it := range cmv.Items {
				if _, ok := cm.Data[it.Key]; !ok {
					t.Errorf("%s.configMap.items[%s]: ConfigMap %s has no key %q", at, it.Key, cm.Name, it.Key)
				}
			}
		}
	}
	used := map[string]bool{}
	for _, c := range containers(r) {
		mounts := map[string]bool{}
		for _, vm := range c.c.VolumeMounts {
			at := r.at(c.path + ".volumeMounts[" + vm.Name + "]")
			used[vm.Name] = true
			if vols[vm.Name] == nil {
				t.Errorf("%s: no volume %q in spec.template.spec.volumes", at, vm.Name)
			}
			if mounts[vm.MountPath] {
				t.Errorf("%s: mountPath %s mounted twice", at, vm.MountPath)
			}
			mounts[vm.MountPath] = true
			if vm.MountPropagation != nil && *vm.MountPropagation == corev1.MountPropagationBidirectional {
				t.Errorf("%s: Bidirectional propagation needs a privileged container", at)
			}
		}
	}
	for name := range vols {
		if !used[name] {
			t.Errorf("%s: mounted by no container", r.at("spec.template.spec.volumes["+name+"]"))
		}
	}
}

// checkEnv: every value taken from a ConfigMap exists, every $(VAR) of command and args is an
// environment variable of the container (the kubelet leaves an unknown one as it is, silently).
func checkEnv(t *testing.T, m *manifests, r resource, c container) {
	env, err := m.env(r, c.c)
	if err != nil {
		t.Errorf("%s: %v", r.at(c.path+".env"), err)
	}
	for i, a := range slices.Concat(c.c.Command, c.c.Args) {
		if _, err := expand(a, env); err != nil {
			t.Errorf("%s: %q: %v", r.at(fmt.Sprintf("%s.command+args[%d]", c.path, i)), a, err)
		}
	}
}

// env resolves a container's environment: ConfigMap values as they are, status.podIP as a
// stand-in address.
func (m *manifests) env(r resource, c *corev1.Container) (map[string]string, error) {
	env := map[string]string{}
	var errs []error
	for _, e := range c.Env {
		if errs2 := validation.IsEnvVarName(e.Name); len(errs2) > 0 {
			errs = append(errs, fmt.Errorf("%s: %s", e.Name, strings.Join(errs2, "; ")))
		}
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			cm := m.configMaps[r.meta.Namespace+"/"+ref.Name]
			if cm == nil {
				errs = append(errs, fmt.Errorf("%s: no ConfigMap %q in namespace %s", e.Name, ref.Name, r.meta.Namespace))
				continue
			}
			v, ok := cm.Data[ref.Key]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: ConfigMap %s has no key %q", e.Name, ref.Name, ref.Key))
				continue
			}
			env[e.Name] = v
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP":
			env[e.Name] = podIPStandIn
		default:
			errs = append(errs, fmt.Errorf("%s: a source this test does not resolve", e.Name))
		}
	}
	return env, errors.Join(errs...)
}

// expand replaces $(VAR) as the kubelet does in command and args ($$ escapes a $), but fails on
// a variable the container does not define.
func expand(s string, env map[string]string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i:], ')')
			if end < 0 {
				return "", fmt.Errorf("unclosed $(")
			}
			name := s[i+2 : i+end]
			v, ok := env[name]
			if !ok {
				return "", fmt.Errorf("$(%s) is not an environment variable of the container", name)
			}
			b.WriteString(v)
			i += end
		default:
			b.WriteByte('$')
		}
	}
	return b.String(), nil
}

// checkSecurity: no privilege, no escalation, read-only root, root uid for xsyn, seccomp
// RuntimeDefault, and the capabilities of README.md's table (TestCapabilitiesDocumented).
func checkSecurity(t *testing.T, r resource, ps *corev1.PodSpec, c container) {
	at := func(f string) string { return r.at(c.path + ".securityContext" + f) }
	sc := c.c.SecurityContext
	if sc == nil {
		t.Errorf("%s: missing", at(""))
		return
	}
	if sc.Privileged == nil || *sc.Privileged {
		t.Errorf("%s: want false, set explicitly", at(".privileged"))
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: want false", at(".allowPrivilegeEscalation"))
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: want true", at(".readOnlyRootFilesystem"))
	}
	if sc.ProcMount != nil && *sc.ProcMount != corev1.DefaultProcMount {
		t.Errorf("%s: %q: Unmasked needs hostUsers: false, where the node's netns is out of reach", at(".procMount"), *sc.ProcMount)
	}
	if xsynArgs(c.c) != nil {
		if sc.RunAsUser == nil || *sc.RunAsUser != 0 || (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) {
			t.Errorf("%s: want runAsUser 0 and not runAsNonRoot: xsyn refuses to run as any other user", at(".runAsUser"))
		}
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil && ps.SecurityContext != nil {
		seccomp = ps.SecurityContext.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: want RuntimeDefault (on the container or the pod)", at(".seccompProfile"))
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("%s: want [ALL]", at(".capabilities.drop"))
	}
	// AppArmor: writers must create pins and mount (entrypoint.sh), readers keep the default.
	unconfined := sc.AppArmorProfile != nil && sc.AppArmorProfile.Type == corev1.AppArmorProfileTypeUnconfined
	if writes(c.c) && !unconfined {
		t.Errorf("%s: want Unconfined: the runtime's default profile denies creating pins in /sys/fs/bpf and mount(2)", at(".appArmorProfile"))
	}
	if !writes(c.c) && unconfined {
		t.Errorf("%s: Unconfined for a container that writes nothing", at(".appArmorProfile"))
	}
}

func checkResources(t *testing.T, r resource, c container) {
	res := c.c.Resources
	at := r.at(c.path + ".resources")
	if _, ok := res.Requests[corev1.ResourceCPU]; !ok {
		t.Errorf("%s.requests.cpu: missing", at)
	}
	if _, ok := res.Requests[corev1.ResourceMemory]; !ok {
		t.Errorf("%s.requests.memory: missing", at)
	}
	if lim, ok := res.Limits[corev1.ResourceMemory]; !ok {
		t.Errorf("%s.limits.memory: missing", at)
	} else if req := res.Requests[corev1.ResourceMemory]; lim.Cmp(req) < 0 {
		t.Errorf("%s.limits.memory: %s is below the request %s", at, lim.String(), req.String())
	}
}

// ---------------------------------------------------------------------------------------------
// xsyn's own state: the same host paths as xsyn on the node.

// hostMount is a hostPath volume a container must mount.
type hostMount struct {
	host, mount string
	typ         corev1.HostPathType
	why         string
}

var (
	bpffsMount   = hostMount{loader.BPFFS, loader.BPFFS, corev1.HostPathDirectory, "the pins (a bpffs mount point the kernel creates)"}
	lockMount    = hostMount{loader.LockDir, loader.LockDir, corev1.HostPathDirectoryOrCreate, "the writers' lock, shared with xsyn on the node"}
	xtMount      = hostMount{xtablesLock, xtablesLock, corev1.HostPathFileOrCreate, "iptables' lock, shared with kube-proxy"}
	procNetMount = hostMount{"/proc/sys/net", hostProcNet, corev1.HostPathDirectory, "the node's net sysctls, writable (entrypoint.sh)"}
)

func TestHostMounts(t *testing.T) {
	m := load(t)
	script, err := os.ReadFile(entrypointSrc)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(script), "mount --bind "+hostProcNet+" /proc/sys/net") {
		t.Errorf("%s does not bind %s over /proc/sys/net, which the writers' mount of the node's /proc/sys/net is for", entrypointSrc, hostProcNet)
	}
	for _, r := range m.all("DaemonSet") {
		ps := &r.obj.(*appsv1.DaemonSet).Spec.Template.Spec
		for _, c := range containers(r) {
			args := xsynArgs(c.c)
			var want []hostMount
			switch {
			case writes(c.c):
				want = []hostMount{bpffsMount, lockMount, xtMount, procNetMount}
			case len(args) > 0 && args[0] == "serve":
				// The repair takes the writers' lock and reads attach's records of what it applied.
				want = []hostMount{bpffsMount, lockMount, xtMount}
			case len(args) > 0:
				want = []hostMount{bpffsMount, xtMount}
			}
			for _, hm := range want {
				vm := mountAt(c.c, hm.mount)
				at := r.at(c.path + ".volumeMounts")
				if vm == nil {
					t.Errorf("%s: nothing at %s: want hostPath %s (%s)", at, hm.mount, hm.host, hm.why)
					continue
				}
				v := volume(ps, vm.Name)
				if v == nil || v.HostPath == nil || v.HostPath.Path != hm.host {
					t.Errorf("%s: %s is not hostPath %s (%s)", at, hm.mount, hm.host, hm.why)
					continue
				}
				if v.HostPath.Type == nil || *v.HostPath.Type != hm.typ {
					got := "unset"
					if v.HostPath.Type != nil {
						got = string(*v.HostPath.Type)
					}
					t.Errorf("%s: %s, want %s", r.at("spec.template.spec.volumes["+v.Name+"].hostPath.type"), got, hm.typ)
				}
				switch {
				case (writes(c.c) || hm == lockMount) && vm.ReadOnly:
					t.Errorf("%s: %s is read-only, and %s writes it", at, hm.mount, args[0])
				case !writes(c.c) && hm == bpffsMount && !vm.ReadOnly:
					t.Errorf("%s: %s: want readOnly: %s only reads the pins", at, hm.mount, args[0])
				}
			}
		}
	}
}

func mountAt(c *corev1.Container, path string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].MountPath == path {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func volume(ps *corev1.PodSpec, name string) *corev1.Volume {
	for i := range ps.Volumes {
		if ps.Volumes[i].Name == name {
			return &ps.Volumes[i]
		}
	}
	return nil
}

// ---------------------------------------------------------------------------------------------
// The configuration.

func TestConfig(t *testing.T) {
	m := load(t)
	checkKeysUsed(t, m)
	for _, r := range m.all("DaemonSet") {
		for _, c := range containers(r) {
			args := xsynArgs(c.c)
			if len(args) == 0 || (args[0] != "attach" && args[0] != "detach") {
				continue
			}
			env, err := m.env(r, c.c)
			if err != nil {
				t.Fatalf("%s: %v", r.at(c.path+".env"), err)
			}
			iface, err := expand(args[1], env)
			if err != nil || iface == "" {
				t.Errorf("%s: interface %q: %v", r.at(c.path+".args[2]"), args[1], err)
				continue
			}
			if b := env["XSYN_IPTABLES_BACKEND"]; !slices.Contains([]string{"nft", "legacy", "auto"}, b) {
				t.Errorf("%s: XSYN_IPTABLES_BACKEND=%q: want nft, legacy or auto (%s)", r.at(c.path+".env"), b, entrypointSrc)
			}
			if args[0] != "attach" {
				continue
			}
			i := slices.Index(args, "--config")
			if i < 0 || i+1 == len(args) {
				t.Errorf("%s: attach without --config FILE", r.at(c.path+".args"))
				continue
			}
			file, src, err := m.mountedFile(r, c.c, args[i+1])
			if err != nil {
				t.Errorf("%s: --config %s: %v", r.at(c.path+".args"), args[i+1], err)
				continue
			}
			cfg, err := spec.ParseConfig(src, []byte(file), nil)
			if err != nil {
				t.Errorf("%s: does not parse:\n%v", src, err)
				continue
			}
			if _, err := cfg.For(iface); err != nil {
				t.Errorf("%s: nothing for interface %s, which %s attaches: %v", src, iface, r.at(c.path), err)
			}
			named := cfg.Interfaces()
			if !slices.Contains(named, iface) {
				t.Errorf("%s: names interfaces %v, not %s, which %s attaches", src, named, iface, r.at(c.path))
			}
			for _, n := range named {
				if n != iface {
					t.Errorf("%s: a statement for %s is never applied: %s attaches %s only", src, n, r.at(c.path), iface)
				}
			}
			t.Logf("%s: attach %s: %d statements from %s", r.at(c.path), iface, len(cfg.Statements), src)
		}
	}
}

// checkKeysUsed: every key of every ConfigMap is read by some container (an environment
// variable or a file), or it is a setting nobody applies.
func checkKeysUsed(t *testing.T, m *manifests) {
	used := map[string]bool{} // namespace/name/key, or namespace/name/* for a whole-map volume
	for _, r := range m.all("DaemonSet") {
		ns := r.meta.Namespace
		ps := &r.obj.(*appsv1.DaemonSet).Spec.Template.Spec
		for _, v := range ps.Volumes {
			if v.ConfigMap == nil {
				continue
			}
			if len(v.ConfigMap.Items) == 0 {
				used[ns+"/"+v.ConfigMap.Name+"/*"] = true
			}
			for _, it := range v.ConfigMap.Items {
				used[ns+"/"+v.ConfigMap.Name+"/"+it.Key] = true
			}
		}
		for _, c := range containers(r) {
			for _, e := range c.c.Env {
				if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
					used[ns+"/"+e.ValueFrom.ConfigMapKeyRef.Name+"/"+e.ValueFrom.ConfigMapKeyRef.Key] = true
				}
			}
		}
	}
	for _, r := range m.all("ConfigMap") {
		cm := r.obj.(*corev1.ConfigMap)
		for k := range cm.Data {
			base := cm.Namespace + "/" + cm.Name + "/"
			if !used[base+k] && !used[base+"*"] {
				t.Errorf("%s: no container reads it", r.at("data."+k))
			}
		}
	}
}

// mountedFile returns what a container reads at path from a ConfigMap volume, and where that
// comes from.
func (m *manifests) mountedFile(r resource, c *corev1.Container, path string) (content, source string, err error) {
	ps := &r.obj.(*appsv1.DaemonSet).Spec.Template.Spec
	for _, vm := range c.VolumeMounts {
		rel, err := filepath.Rel(vm.MountPath, path)
		if err != nil || strings.HasPrefix(rel, "..") || rel == "." {
			continue
		}
		v := volume(ps, vm.Name)
		if v == nil || v.ConfigMap == nil {
			return "", "", fmt.Errorf("volume %q mounted at %s is not a ConfigMap", vm.Name, vm.MountPath)
		}
		cm := m.configMaps[r.meta.Namespace+"/"+v.ConfigMap.Name]
		if cm == nil {
			return "", "", fmt.Errorf("no ConfigMap %q", v.ConfigMap.Name)
		}
		key := rel
		if len(v.ConfigMap.Items) > 0 {
			key = ""
			for _, it := range v.ConfigMap.Items {
				if it.Path == rel {
					key = it.Key
				}
			}
		}
		data, ok := cm.Data[key]
		if !ok {
			return "", "", fmt.Errorf("volume %q (ConfigMap %s) has no file %s", vm.Name, cm.Name, rel)
		}
		return data, fmt.Sprintf("ConfigMap %s key %s", cm.Name, key), nil
	}
	return "", "", fmt.Errorf("no volume is mounted there")
}

// ---------------------------------------------------------------------------------------------
// Capabilities: the manifests, README.md's table and the iptables backend agree.

// documentedCapabilities reads README.md's table: | `container` | runs | CAPS | AppArmor |.
func documentedCapabilities(t *testing.T) map[string][]string {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| `([a-z0-9-]+)` \\|[^|]*\\| ([A-Z_, ]+|none) \\|")
	out := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		mm := row.FindStringSubmatch(line)
		if mm == nil {
			continue
		}
		var caps []string
		if mm[2] != "none" {
			for _, c := range strings.Split(mm[2], ",") {
				caps = append(caps, strings.TrimSpace(c))
			}
		}
		sort.Strings(caps)
		out[mm[1]] = caps
	}
	if len(out) == 0 {
		t.Fatal("README.md: no capability table (| `container` | runs | CAPS | AppArmor |)")
	}
	return out
}

func TestCapabilitiesDocumented(t *testing.T) {
	m := load(t)
	doc := documentedCapabilities(t)
	for _, r := range m.all("DaemonSet") {
		for _, c := range containers(r) {
			want, ok := doc[c.c.Name]
			if !ok {
				t.Errorf("%s: container %s is not in README.md's capability table", r.at(c.path), c.c.Name)
				continue
			}
			want = slices.Clone(want)
			if xsynArgs(c.c) != nil {
				env, _ := m.env(r, c.c)
				// iptables-legacy opens a raw socket; auto reads the legacy tables.
				if b := env["XSYN_IPTABLES_BACKEND"]; b == "legacy" || b == "auto" {
					want = append(want, "NET_RAW")
				}
			}
			sort.Strings(want)
			var got []string
			if sc := c.c.SecurityContext; sc != nil && sc.Capabilities != nil {
				for _, a := range sc.Capabilities.Add {
					got = append(got, string(a))
				}
			}
			sort.Strings(got)
			if !slices.Equal(got, want) {
				t.Errorf("%s: %v, want %v (README.md's table, NET_RAW with the legacy or auto iptables backend)",
					r.at(c.path+".securityContext.capabilities.add"), got, want)
			}
		}
	}
}

// TestCapabilitiesFollowUse checks the table's reasons against what each container does. Every
// xsyn command runs iptables (NET_ADMIN). SYS_ADMIN is for entrypoint.sh's bind mount of the
// node's /proc/sys/net, so exactly the containers that mount it have SYS_ADMIN (which also
// stands for CAP_BPF and CAP_PERFMON). The others find xsyn's program through its pins and need
// no SYS_ADMIN, only BPF, for the RuntimeDefault seccomp profile to admit bpf(2).
func TestCapabilitiesFollowUse(t *testing.T) {
	m := load(t)
	for _, r := range m.all("DaemonSet") {
		for _, c := range containers(r) {
			if xsynArgs(c.c) == nil {
				continue
			}
			var add []corev1.Capability
			if sc := c.c.SecurityContext; sc != nil && sc.Capabilities != nil {
				add = sc.Capabilities.Add
			}
			mountsProcNet := slices.ContainsFunc(c.c.VolumeMounts, func(v corev1.VolumeMount) bool { return v.MountPath == hostProcNet })
			at := r.at(c.path + ".securityContext.capabilities.add")
			if !slices.Contains(add, "NET_ADMIN") {
				t.Errorf("%s: %v lacks NET_ADMIN: every xsyn command runs iptables", at, add)
			}
			switch {
			case mountsProcNet && !slices.Contains(add, "SYS_ADMIN"):
				t.Errorf("%s: %v lacks SYS_ADMIN, which entrypoint.sh's bind mount of %s needs", at, add, hostProcNet)
			case !mountsProcNet && slices.Contains(add, "SYS_ADMIN"):
				t.Errorf("%s: %v has SYS_ADMIN without mounting %s: xsyn reads its pins without it", at, add, hostProcNet)
			case !mountsProcNet && !slices.Contains(add, "BPF"):
				t.Errorf("%s: %v lacks BPF: RuntimeDefault seccomp admits bpf(2) only with CAP_BPF or CAP_SYS_ADMIN", at, add)
			}
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Command lines: xsyn's own CLI judges them.

var (
	buildOnce sync.Once
	xsynBin   string
	buildErr  error
)

// buildXsyn builds cmd/xsyn from this tree, in a directory any user may read (the command lines
// are run as nobody).
func buildXsyn(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "xsyn-k8s-test-")
		if err != nil {
			buildErr = err
			return
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			buildErr = err
			return
		}
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		xsynBin = filepath.Join(dir, "xsyn")
		cmd := exec.Command(goBin, "build", "-o", xsynBin, "./cmd/xsyn")
		cmd.Dir = filepath.Join("..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/xsyn: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return xsynBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if xsynBin != "" {
		os.RemoveAll(filepath.Dir(xsynBin))
	}
	os.Exit(code)
}

// runXsyn runs the xsyn binary with args as an unprivileged user (nobody, when the test runs as
// root), so that no command line can change anything on this machine. It returns the exit code
// and the output.
func runXsyn(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = filepath.Dir(bin)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String()
	}
	t.Fatalf("run %s %v: %v", bin, args, err)
	return 0, ""
}

// cliFlag is a flag as `xsyn COMMAND --help` lists it.
type cliFlag struct {
	name  string
	value bool // takes a value (the help names one: "-config FILE")
}

// usage is what `xsyn COMMAND --help` says of a command.
type usage struct {
	positional int // required arguments before the first [option] of the synopsis
	optional   int // optional arguments ([IFACE]) before it
	flags      map[string]cliFlag
}

var (
	helpFlag   = regexp.MustCompile(`^  -([A-Za-z0-9][\w.-]*)(?: (\S+))?$`)
	commandRow = regexp.MustCompile(`^  ([a-z]+) +\S`)
)

func commandsOf(t *testing.T, bin string) []string {
	code, out := runXsyn(t, bin, "--help")
	if code != 0 {
		t.Fatalf("xsyn --help: exit %d\n%s", code, out)
	}
	_, list, ok := strings.Cut(out, "Commands:\n")
	if !ok {
		t.Fatalf("xsyn --help lists no Commands:\n%s", out)
	}
	var cmds []string
	for _, line := range strings.Split(list, "\n") {
		if strings.TrimSpace(line) == "" {
			break
		}
		if mm := commandRow.FindStringSubmatch(line); mm != nil {
			cmds = append(cmds, mm[1])
		}
	}
	return cmds
}

func usageOf(t *testing.T, bin, command string) usage {
	code, out := runXsyn(t, bin, command, "--help")
	if code != 0 {
		t.Fatalf("xsyn %s --help: exit %d\n%s", command, code, out)
	}
	u := usage{flags: map[string]cliFlag{}}
	lines := strings.Split(out, "\n")
	synopsis, ok := strings.CutPrefix(lines[0], "Usage: xsyn "+command)
	if !ok {
		t.Fatalf("xsyn %s --help: first line %q, want \"Usage: xsyn %s ...\"", command, lines[0], command)
	}
	for _, w := range strings.Fields(synopsis) {
		// An optional argument stands alone in brackets ([IFACE]); flags come after.
		if inner, ok := strings.CutPrefix(w, "["); ok {
			inner, whole := strings.CutSuffix(inner, "]")
			if whole && !strings.HasPrefix(inner, "-") && inner == strings.ToUpper(inner) {
				u.optional++
				continue
			}
			break
		}
		if w == strings.ToUpper(w) {
			u.positional++
		}
	}
	inFlags := false
	for _, line := range lines {
		if line == "Flags:" {
			inFlags = true
			continue
		}
		if mm := helpFlag.FindStringSubmatch(line); inFlags && mm != nil {
			u.flags[mm[1]] = cliFlag{name: mm[1], value: mm[2] != ""}
		}
	}
	return u
}

// checkCommandLine checks args (after "xsyn") against the help of the command: the command
// exists, every flag is one of its flags, with a value where it takes one, and the number of
// positional arguments is the synopsis'. It returns the flags' values.
func checkCommandLine(args []string, commands []string, u usage) (map[string]string, error) {
	if !slices.Contains(commands, args[0]) {
		return nil, fmt.Errorf("%q is not an xsyn command (xsyn --help: %s)", args[0], strings.Join(commands, ", "))
	}
	values := map[string]string{}
	pos := 0
	for i := 1; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos++
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f, ok := u.flags[name]
		if !ok {
			var known []string
			for n := range u.flags {
				known = append(known, "--"+n)
			}
			sort.Strings(known)
			return nil, fmt.Errorf("%s is not a flag of xsyn %s (%s)", a, args[0], strings.Join(known, " "))
		}
		if f.value && !hasVal {
			if i+1 == len(args) {
				return nil, fmt.Errorf("%s needs a value", a)
			}
			i++
			val = args[i]
		}
		values[name] = val
	}
	if pos < u.positional || pos > u.positional+u.optional {
		return nil, fmt.Errorf("%d arguments besides flags, xsyn %s takes %d to %d", pos, args[0], u.positional, u.positional+u.optional)
	}
	return values, nil
}

func TestCommandLines(t *testing.T) {
	m := load(t)
	bin := buildXsyn(t)
	commands := commandsOf(t, bin)
	usages := map[string]usage{}
	ran := 0
	for _, r := range m.all("DaemonSet") {
		for _, c := range containers(r) {
			if len(c.c.Command) > 0 && c.c.Command[0] == entrypoint && xsynArgs(c.c) == nil {
				t.Errorf("%s: %v: the entrypoint runs its arguments, and these are no xsyn command line", r.at(c.path+".args"), c.c.Args)
				continue
			}
			raw := xsynArgs(c.c)
			if raw == nil {
				continue
			}
			env, _ := m.env(r, c.c)
			args := make([]string, len(raw))
			var expandErr error
			for i, a := range raw {
				var err error
				if args[i], err = expand(a, env); err != nil {
					expandErr = err
				}
			}
			if expandErr != nil {
				continue // TestPodSpec names the variable
			}
			if _, ok := usages[args[0]]; !ok && slices.Contains(commands, args[0]) {
				usages[args[0]] = usageOf(t, bin, args[0])
			}
			at := r.at(c.path + ".args")
			values, err := checkCommandLine(args, commands, usages[args[0]])
			if err != nil {
				t.Errorf("%s: xsyn %s: %v", at, strings.Join(args, " "), err)
				continue
			}
			// The real CLI's verdict: exit code 2 is a wrong command line. Run as nobody, it stops
			// at "must run as root" (or at a missing interface) before touching anything. The
			// configuration file is the ConfigMap's key, written where nobody can read it.
			run := slices.Clone(args)
			if i := slices.Index(run, "--config"); i >= 0 && i+1 < len(run) {
				content, _, err := m.mountedFile(r, c.c, run[i+1])
				if err != nil {
					t.Errorf("%s: --config %s: %v", at, run[i+1], err)
					continue
				}
				f := filepath.Join(filepath.Dir(bin), c.c.Name+".conf")
				if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
				run[i+1] = f
			}
			code, out := runXsyn(t, bin, run...)
			ran++
			t.Logf("%s: xsyn %s: exit %d: %s", at, strings.Join(args, " "), code, strings.TrimSpace(out))
			if code == 2 {
				t.Errorf("%s: xsyn rejects the command line xsyn %s:\n%s", at, strings.Join(args, " "), out)
			}
			if args[0] == "serve" {
				checkServe(t, m, r, c, values)
			}
		}
	}
	if ran == 0 {
		t.Error("no container runs xsyn")
	}
}

// checkServe: the exporter listens on the pod IP, on the port named metrics, and the probes ask
// it for a page it serves.
func checkServe(t *testing.T, m *manifests, r resource, c container, flags map[string]string) {
	at := r.at(c.path + ".args")
	addr := flags["web.listen-address"]
	host, port, ok := strings.Cut(addr, ":")
	if !ok || strings.Contains(port, ":") {
		t.Errorf("%s: --web.listen-address %q is not HOST:PORT", at, addr)
		return
	}
	if host != podIPStandIn {
		t.Errorf("%s: --web.listen-address %q: want $(POD_IP) (status.podIP, the node's IP with hostNetwork): "+
			"127.0.0.1 is out of Prometheus' reach, 0.0.0.0 includes the protected interface", at, addr)
	}
	var metricsPort *corev1.ContainerPort
	for i := range c.c.Ports {
		if c.c.Ports[i].Name == "metrics" {
			metricsPort = &c.c.Ports[i]
		}
	}
	if metricsPort == nil {
		t.Errorf("%s: no port named metrics", r.at(c.path+".ports"))
		return
	}
	if strconv.Itoa(int(metricsPort.ContainerPort)) != port {
		t.Errorf("%s: containerPort %d, but serve listens on port %s", r.at(c.path+".ports[metrics]"), metricsPort.ContainerPort, port)
	}
	if metricsPort.HostPort != 0 && metricsPort.HostPort != metricsPort.ContainerPort {
		t.Errorf("%s: hostPort %d must equal containerPort with hostNetwork", r.at(c.path+".ports[metrics]"), metricsPort.HostPort)
	}
	path := servePaths(m)[r.meta.Namespace+"/"+r.meta.Name]
	for name, p := range map[string]*corev1.Probe{"readinessProbe": c.c.ReadinessProbe, "livenessProbe": c.c.LivenessProbe} {
		pat := r.at(c.path + "." + name)
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: want an httpGet on the metrics port", pat)
			continue
		}
		if p.HTTPGet.Port.String() != "metrics" && p.HTTPGet.Port.IntValue() != int(metricsPort.ContainerPort) {
			t.Errorf("%s.httpGet.port: %s, want metrics", pat, p.HTTPGet.Port.String())
		}
		if p.HTTPGet.Path != "/" && p.HTTPGet.Path != path {
			t.Errorf("%s.httpGet.path: %q: serve answers / and %s only", pat, p.HTTPGet.Path, path)
		}
		if p.HTTPGet.Host != "" {
			t.Errorf("%s.httpGet.host: %q: the kubelet asks the pod IP, where serve listens", pat, p.HTTPGet.Host)
		}
	}
}

// servePaths returns the metrics path of the exporter of each DaemonSet that runs one (by
// namespace/name); TestCommandLines checks that the flag is serve's.
func servePaths(m *manifests) map[string]string {
	out := map[string]string{}
	for _, r := range m.all("DaemonSet") {
		for _, c := range containers(r) {
			args := xsynArgs(c.c)
			if len(args) == 0 || args[0] != "serve" || c.init {
				continue
			}
			path := defaultPath
			for i, a := range args {
				if v, ok := strings.CutPrefix(a, "--web.telemetry-path="); ok {
					path = v
				} else if a == "--web.telemetry-path" && i+1 < len(args) {
					path = args[i+1]
				}
			}
			out[r.meta.Namespace+"/"+r.meta.Name] = path
		}
	}
	return out
}

// ---------------------------------------------------------------------------------------------
// Prometheus.

func TestPodMonitor(t *testing.T) {
	m := load(t)
	servePath := servePaths(m)
	for _, r := range m.all("PodMonitor") {
		pm := r.obj.(*monitoringv1.PodMonitor)
		sel, err := metav1.LabelSelectorAsSelector(&pm.Spec.Selector)
		if err != nil || sel.Empty() {
			t.Errorf("%s: %v (an empty selector scrapes every pod)", r.at("spec.selector"), err)
			continue
		}
		var matched []resource
		for _, ds := range m.all("DaemonSet") {
			inNS := ds.meta.Namespace == r.meta.Namespace || pm.Spec.NamespaceSelector.Any ||
				slices.Contains(pm.Spec.NamespaceSelector.MatchNames, ds.meta.Namespace)
			if inNS && sel.Matches(labels.Set(ds.obj.(*appsv1.DaemonSet).Spec.Template.Labels)) {
				matched = append(matched, ds)
			}
		}
		var exporters []resource
		for _, ds := range matched {
			if _, ok := servePath[ds.meta.Namespace+"/"+ds.meta.Name]; ok {
				exporters = append(exporters, ds)
			} else {
				t.Errorf("%s: selects the pods of %s, which serve no metrics", r.at("spec.selector"), ds.at("spec.template.metadata.labels"))
			}
		}
		if len(exporters) == 0 {
			t.Errorf("%s: %s selects no xsyn exporter's pods", r.at("spec.selector"), sel)
			continue
		}
		for i, ep := range pm.Spec.PodMetricsEndpoints {
			at := r.at(fmt.Sprintf("spec.podMetricsEndpoints[%d]", i))
			if ep.Port == nil {
				t.Errorf("%s.port: missing", at)
				continue
			}
			for _, ds := range exporters {
				found := false
				for _, c := range containers(ds) {
					if !c.init && slices.ContainsFunc(c.c.Ports, func(p corev1.ContainerPort) bool { return p.Name == *ep.Port }) {
						found = true
					}
				}
				if !found {
					t.Errorf("%s.port: %q is no port of a container of %s", at, *ep.Port, ds.at("spec.template.spec.containers"))
				}
				if want := servePath[ds.meta.Namespace+"/"+ds.meta.Name]; ep.Path != want {
					t.Errorf("%s.path: %q, but serve serves the metrics at %s", at, ep.Path, want)
				}
			}
		}
		if pm.Spec.JobLabel != "" {
			docs, err := os.ReadFile(filepath.Join("..", "..", "docs", "metrics.md"))
			if err != nil {
				t.Fatal(err)
			}
			for _, ds := range exporters {
				job := ds.obj.(*appsv1.DaemonSet).Spec.Template.Labels[pm.Spec.JobLabel]
				if job == "" {
					t.Errorf("%s: pod label %q is not on %s", r.at("spec.jobLabel"), pm.Spec.JobLabel, ds.at("spec.template.metadata.labels"))
				} else if !strings.Contains(string(docs), `job="`+job+`"`) {
					t.Errorf("%s: job=%q, but docs/metrics.md queries another job", r.at("spec.jobLabel"), job)
				}
			}
		}
	}
}

// ---------------------------------------------------------------------------------------------
// The image.

func TestImage(t *testing.T) {
	m := load(t)
	df, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join("..", "..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goLine == nil {
		t.Fatal("go.mod: no go directive")
	}
	if !regexp.MustCompile(`(?m)^FROM golang:` + regexp.QuoteMeta(string(goLine[1])) + `[-.\s]`).Match(df) {
		t.Errorf("Dockerfile: the builder is not golang:%s, the Go of go.mod", goLine[1])
	}
	for _, want := range []string{
		`ENTRYPOINT ["` + entrypoint + `"]`,
		"COPY deploy/kubernetes/" + entrypointSrc + " " + entrypoint,
		"CGO_ENABLED=0 go build",
	} {
		if !bytes.Contains(df, []byte(want)) {
			t.Errorf("Dockerfile: no %q", want)
		}
	}
	script, err := os.ReadFile(entrypointSrc)
	if err != nil {
		t.Fatal(err)
	}
	libdir := regexp.MustCompile(`libdir=\$\{XSYN_LIBDIR:-(\S+)\}`).FindSubmatch(script)
	if libdir == nil || !bytes.Contains(df, append(libdir[1], "/iptables-$b"...)) {
		t.Errorf("Dockerfile: does not make the iptables-$b directories under the entrypoint's libdir %q", libdir)
	}
	images := map[string]bool{}
	for _, r := range m.all("DaemonSet") {
		for _, c := range containers(r) {
			images[c.c.Image] = true
			if len(c.c.Command) > 0 && c.c.Command[0] != entrypoint && xsynArgs(c.c) == nil && c.c.Command[0] != "sleep" {
				t.Errorf("%s: %v: neither the entrypoint nor a command the image has", r.at(c.path+".command"), c.c.Command)
			}
		}
	}
	if len(images) != 1 {
		t.Errorf("the containers run %d images, want the one of Dockerfile: %v", len(images), images)
	}
}
