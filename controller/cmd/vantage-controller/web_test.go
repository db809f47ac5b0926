package main

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vantage-net/vantage/controller/web"
)

// TestWebDashboard runs the real controller with --web-addr and logs in
// over HTTPS, verified against the controller's CA, with the admin token.
func TestWebDashboard(t *testing.T) {
	webAddr := make(chan net.Addr, 1)
	c := startController(t, func(cfg *Config) {
		cfg.WebAddr = "127.0.0.1:0"
		cfg.WebReady = func(a net.Addr) { webAddr <- a }
	})
	base := "https://" + (<-webAddr).String()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.pool, ServerName: "localhost"}}}
	resp, err := client.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Path != "/login" {
		t.Fatalf("GET / without a session ended at %s, want /login", resp.Request.URL.Path)
	}
	resp, err = client.PostForm(base+"/login", url.Values{"token": {c.admin}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/" || !strings.Contains(string(body), `id="campaigns"`) {
		t.Fatalf("login with the admin token: %d at %s: %.200s", resp.StatusCode, resp.Request.URL.Path, body)
	}
	var cookie *http.Cookie
	u, _ := url.Parse(base)
	for _, k := range jar.Cookies(u) {
		if k.Name == web.CookieName {
			cookie = k
		}
	}
	if cookie == nil {
		t.Fatal("no session cookie after login")
	}
}

func TestWebPlainOnlyOnLoopback(t *testing.T) {
	err := Run(context.Background(), Config{DataDir: filepath.Join(t.TempDir(), "data"), Listen: "127.0.0.1:0",
		WebAddr: "0.0.0.0:0", WebPlain: true})
	if err == nil || !strings.Contains(err.Error(), "--web-plain") {
		t.Fatalf("Run with --web-plain on 0.0.0.0 = %v; want an error naming --web-plain", err)
	}
}

// The dashboard dials the controller's own gRPC listener: on loopback
// when it listens everywhere, else on the one address it listens on (the
// lab's controller listens on its namespace's address only).
func TestSelfAddr(t *testing.T) {
	for _, c := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4zero, Port: 7443}, "127.0.0.1:7443"},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 7443}, "127.0.0.1:7443"},
		{&net.TCPAddr{Port: 7443}, "127.0.0.1:7443"},
		{&net.TCPAddr{IP: net.ParseIP("198.51.100.34"), Port: 7443}, "198.51.100.34:7443"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:5::34"), Port: 7443}, "[2001:db8:5::34]:7443"},
	} {
		if got := selfAddr(c.addr); got != c.want {
			t.Errorf("selfAddr(%v) = %s, want %s", c.addr, got, c.want)
		}
	}
}
