package e2e

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// writeCountryDB writes an ip-location-db style database mapping one
// network to a country, replacing path atomically as geoipupdate does.
func writeCountryDB(t *testing.T, path, cidr, country string) {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "country ipvAll", IPVersion: 6, RecordSize: 24, DisableIPv4Aliasing: true})
	if err != nil {
		t.Fatal(err)
	}
	_, n, _ := net.ParseCIDR(cidr)
	if err := tree.Insert(n, mmdbtype.Map{"country_code": mmdbtype.String(country)}); err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// geoServer runs the binary on a database of its own that maps 8.8.8.0/24
// to US, and returns a function giving the decision's country for 8.8.8.8.
func geoServer(t *testing.T, poll string) (db string, cmd *exec.Cmd, country func() (string, int)) {
	t.Helper()
	bin, data := binaryWithSite(t, `{"id":"shop","origins":["https://shop.example"],"purposes":[{"id":"analytics"}]}`)
	db = filepath.Join(t.TempDir(), "country.mmdb")
	writeCountryDB(t, db, "8.8.8.0/24", "US")
	cmd = exec.Command(bin, "serve", "--addr", "127.0.0.1:0", "--data", data, "--geoip", db,
		"--trusted-proxies", "127.0.0.1", "--geo-poll", poll, "--log-level", "error")
	base := startCmd(t, cmd)
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	country = func() (string, int) {
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/sites/shop/decision", nil)
		req.Header.Set("X-Forwarded-For", "8.8.8.8")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", 0
		}
		defer resp.Body.Close()
		var d struct{ Country string }
		json.NewDecoder(resp.Body).Decode(&d)
		return d.Country, resp.StatusCode
	}
	if c, code := country(); c != "US" || code != 200 {
		t.Fatalf("before any swap: %q %d", c, code)
	}
	return db, cmd, country
}

// waitCountry polls until the decision names want, failing after 5 s.
func waitCountry(t *testing.T, country func() (string, int), want string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if c, _ := country(); c == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c, _ := country()
	t.Fatalf("country = %q, want %q after the swap", c, want)
}

// The running binary picks up a country database swapped on disk without a
// restart and without one failed request; a broken new file keeps the
// loaded one.
func TestGeoDatabaseSwapWithoutRestart(t *testing.T) {
	db, _, country := geoServer(t, "100ms")
	var failed, total atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20000; i++ { // bounded; stopped far sooner
				select {
				case <-stop:
					return
				default:
				}
				if _, code := country(); code != 200 {
					failed.Add(1)
				}
				total.Add(1)
			}
		}()
	}
	writeCountryDB(t, db, "8.8.8.0/24", "DE")
	waitCountry(t, country, "DE")
	os.WriteFile(db+".tmp", []byte("this is not a database"), 0o600)
	os.Rename(db+".tmp", db)
	time.Sleep(400 * time.Millisecond)
	if c, _ := country(); c != "DE" {
		t.Errorf("a broken file replaced the loaded database: country %q", c)
	}
	writeCountryDB(t, db, "8.8.8.0/24", "JP")
	waitCountry(t, country, "JP")
	close(stop)
	wg.Wait()
	if failed.Load() > 0 {
		t.Errorf("%d of %d decisions failed during the swaps", failed.Load(), total.Load())
	}
	t.Logf("%d decisions during the swaps, none failed", total.Load())
}

// With polling off, a new file is loaded on SIGHUP and not before.
func TestGeoDatabaseReloadOnSIGHUP(t *testing.T) {
	db, cmd, country := geoServer(t, "0")
	writeCountryDB(t, db, "8.8.8.0/24", "DE")
	time.Sleep(300 * time.Millisecond)
	if c, _ := country(); c != "US" {
		t.Fatalf("with polling off the file was reloaded without SIGHUP: %q", c)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	waitCountry(t, country, "DE")
}
