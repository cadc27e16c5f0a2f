package main

import (
	"fmt"
	"io"
	"strings"
)

// name is the one line of NAME, what apropos(1) and whatis(1) find.
const name = "protect TCP servers against SYN floods with XDP SYN cookies"

// files are what the Debian package installs (deploy/deb/nfpm.yaml) and what xsyn keeps at run
// time (loader.BPFFS, loader.LockDir): --help does not name them. deploy/deb's test checks that
// the package installs every path here under /etc and /usr.
var files = []struct{ path, what string }{
	{"/etc/xsyn/xsyn.conf", "The synproxy statements that xsyn@IFACE.service protects IFACE with " +
		"(attach IFACE --config /etc/xsyn/xsyn.conf). The language is in /usr/share/doc/xsyn/docs/config.md."},
	{"/usr/lib/systemd/system/xsyn@.service", "Protects one interface, at boot once enabled: " +
		"systemctl enable --now xsyn@eth0. Reload applies an edited configuration in place; stop detaches. " +
		"Nothing is enabled or started by the package."},
	{"/usr/lib/systemd/system/xsyn-exporter.service", "Runs xsyn serve, the Prometheus exporter, on 127.0.0.1:9377."},
	{"/sys/fs/bpf/xsyn/", "The XDP program's pinned link and maps, per network namespace and interface: " +
		"they keep the protection in place after attach exits."},
	{"/run/xsyn/", "The lock that keeps two writers (attach, detach) of one network namespace apart."},
	{"/usr/share/doc/xsyn/", "README.md and docs/: the configuration language, the operator's guide, " +
		"the design, the metrics, the status JSON; README.systemd.md: the units, directive by directive."},
}

var seeAlso = []string{"iptables(8)", "ip6tables(8)", "nft(8)", "ip(8)", "bpftool(8)", "systemctl(1)", "systemd.exec(5)"}

// writePage writes p as a man(7) page, section 8 (xsyn needs root).
func writePage(w io.Writer, p *page, date string) {
	r := &roff{w: w}
	r.line(`.\" xsyn(8): written by cmd/xsyn-man from the --help of xsyn %s. Do not edit: make man.`, p.version)
	// No hyphenation, no justification: flags and paths stay whole, and searchable.
	r.line(`.TH XSYN 8 "%s" "xsyn %s" "System Administration"`, esc(date), esc(p.version))
	r.line(".nh")
	r.line(".ad l")

	r.line(".SH NAME")
	r.line(`xsyn \- %s`, esc(name))

	r.line(".SH SYNOPSIS")
	r.synopsis(p.synopsis)
	for _, c := range p.commands {
		r.line(".br")
		r.synopsis(c.synopsis)
	}

	r.line(".SH DESCRIPTION")
	r.text(strings.Join(p.intro, "\n\n"))
	r.line(".PP")
	r.line("Commands:")
	width := 0
	for _, c := range p.commands {
		width = max(width, len(c.name)+2)
	}
	for _, c := range p.commands {
		r.line(".TP %dn", width)
		r.line(`.B %s`, esc(c.name))
		r.line(esc(c.summary))
	}
	for _, n := range p.notes {
		r.line(".PP")
		r.text(n)
	}

	r.line(".SH COMMANDS")
	for _, c := range p.commands {
		r.command(c)
	}

	if len(p.examples) > 0 {
		r.line(".SH EXAMPLES")
		for _, e := range p.examples {
			r.line(".TP")
			r.line(`.B %s`, esc(e.command))
			if e.what != "" {
				r.line(esc(e.what))
			}
		}
	}

	r.line(".SH EXIT STATUS")
	for _, e := range p.exits {
		r.line(".TP")
		r.line(".B %s", e.code)
		r.line(esc(e.meaning))
	}

	r.line(".SH FILES")
	for _, f := range files {
		r.line(".TP")
		r.line(`.I %s`, esc(f.path))
		r.line(esc(f.what))
	}

	r.line(".SH SEE ALSO")
	for i, s := range seeAlso {
		page, sec, _ := strings.Cut(strings.TrimSuffix(s, ")"), "(")
		sep := ","
		if i == len(seeAlso)-1 {
			sep = ""
		}
		r.line(".BR %s (%s)%s", esc(page), sec, sep)
	}
	r.line(".PP")
	r.line(esc("/usr/share/doc/xsyn/README.md, /usr/share/doc/xsyn/docs/operator-guide.md, /usr/share/doc/xsyn/docs/config.md"))
}

type roff struct{ w io.Writer }

func (r *roff) line(format string, args ...any) {
	if len(args) == 0 {
		fmt.Fprintln(r.w, format)
		return
	}
	fmt.Fprintf(r.w, format+"\n", args...)
}

// synopsis writes "NAME ARGS..." as xsyn --help does: "xsyn NAME" bold, the rest as it is.
func (r *roff) synopsis(s string) {
	name, rest, _ := strings.Cut(s, " ")
	if strings.ToUpper(name) == name { // COMMAND: a placeholder, not a command
		name, rest = "", s
	}
	r.line(".B xsyn%s", esc(strings.TrimRight(" "+name, " ")))
	if rest != "" {
		r.line(esc(rest))
	}
}

func (r *roff) command(c command) {
	r.line(`.SS "%s"`, esc("xsyn "+c.name))
	r.synopsis(c.synopsis)
	r.line(".PP")
	r.text(c.text)
	if len(c.flags) == 0 {
		return
	}
	r.line(".PP")
	r.line("Flags:")
	for _, f := range c.flags {
		r.line(".TP")
		if f.arg == "" {
			r.line(`\fB\-\-%s\fR`, esc(f.name))
		} else {
			r.line(`\fB\-\-%s\fR \fI%s\fR`, esc(f.name), esc(f.arg))
		}
		r.text(f.usage)
	}
}

// text writes help text: lines at the left margin are filled into paragraphs, blank lines
// separate paragraphs, and indented lines (lists, examples, configuration lines) are kept as
// they are, indented.
func (r *roff) text(s string) {
	pre, para := false, false
	endPre := func() {
		if pre {
			r.line(".fi")
			r.line(".RE")
			pre = false
		}
	}
	for _, l := range strings.Split(s, "\n") {
		switch {
		case strings.TrimSpace(l) == "":
			endPre()
			para = true
			continue
		case strings.HasPrefix(l, " "):
			if para {
				r.line(".PP")
			}
			if !pre {
				r.line(".RS 4")
				r.line(".nf")
				pre = true
			}
			r.line(esc(strings.TrimPrefix(l, "  ")))
		default:
			endPre()
			if para {
				r.line(".PP")
			}
			r.line(esc(l))
		}
		para = false
	}
	endPre()
}

// esc makes s roff text: a backslash printed as one, "-" the ASCII hyphen-minus that flags,
// options and command lines need (not a typographic hyphen), and no line taken for a request.
func esc(s string) string {
	s = strings.NewReplacer(`\`, `\e`, "-", `\-`).Replace(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}
