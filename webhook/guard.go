package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
)

// ErrNotAllowed is a webhook target on a loopback, private, link-local or
// otherwise reserved address, refused unless private targets are allowed.
var ErrNotAllowed = errors.New("the address is loopback, private, link-local or reserved")

// reserved are ranges that are not public unicast beyond what netip's
// IsPrivate, IsLoopback, IsLinkLocal… name (IANA special-purpose registries).
var reserved = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24",
		"198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4",
		"64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
		"2002::/16", "fec0::/10", "3fff::/20", "5f00::/16",
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// PublicAddr tells whether a webhook may be sent to a: a public unicast
// address (IPv4-mapped IPv6 addresses are judged as IPv4).
func PublicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return false
	}
	for _, p := range reserved {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// dialControl refuses, at connect time, any address that is not public:
// the address is the one actually dialled after DNS resolution, so a name
// that resolved to a public address when the endpoint was made and to
// 127.0.0.1 now (DNS rebinding) is refused too.
func dialControl(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("webhook target %q: %w", address, ErrNotAllowed)
	}
	if !PublicAddr(ap.Addr()) {
		return fmt.Errorf("webhook target %s: %w", ap.Addr(), ErrNotAllowed)
	}
	return nil
}

// URLError is a webhook URL refused when an endpoint is made.
type URLError struct {
	NotAllowed bool // the host is or resolves to a non-public address
	Msg        string
}

func (e *URLError) Error() string { return "url: " + e.Msg }

// CheckURL checks an endpoint's URL: http or https, a host, at most 2048
// bytes, and (unless allowPrivate) a host that neither is nor resolves to
// a non-public address.
func CheckURL(ctx context.Context, raw string, allowPrivate bool, resolver *net.Resolver) error {
	if len(raw) > 2048 {
		return &URLError{Msg: "at most 2048 bytes"}
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.Opaque != "" {
		return &URLError{Msg: "want an http or https URL with a host"}
	}
	if u.User != nil {
		return &URLError{Msg: "no user or password in the URL: lists show URLs, and the signature proves the sender"}
	}
	if u.Fragment != "" {
		return &URLError{Msg: "no #fragment"}
	}
	if allowPrivate {
		return nil
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return &URLError{NotAllowed: true, Msg: host + " is a loopback name"}
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if !PublicAddr(a) {
			return &URLError{NotAllowed: true, Msg: a.String() + ": " + ErrNotAllowed.Error()}
		}
		return nil
	}
	if resolver == nil {
		resolver = net.DefaultResolver
	}
	addrs, err := resolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return &URLError{Msg: fmt.Sprintf("host %s does not resolve", host)}
	}
	for _, a := range addrs {
		if !PublicAddr(a) {
			return &URLError{NotAllowed: true, Msg: fmt.Sprintf("%s resolves to %s: %s", host, a.Unmap(), ErrNotAllowed)}
		}
	}
	return nil
}
