package geo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"
)

// Result is what a lookup found.
type Result struct {
	Country string // ISO 3166-1 alpha-2, or "" when unknown
	// EU reports membership of the European Union: MaxMind's
	// is_in_european_union, or membership of EU27 for the ip-location-db
	// layout (so AX, GF, GP, MQ, RE, YT and MF are false there).
	EU     bool
	Source string // SourceGeoIP when the database gave a country, else SourceUnknown
	// BuildDate is the build date of the database that was asked, "" when
	// none was (no database, or a reserved address). It comes from the
	// same database as Country even while a reload runs.
	BuildDate string
}

// Values of Result.Source.
const (
	SourceGeoIP   = "geoip"
	SourceUnknown = "unknown"
)

var unknown = Result{Source: SourceUnknown}

// Locator looks countries up in one .mmdb file and can swap in a newer
// version of it while lookups run. It is safe for concurrent use.
type Locator struct {
	path string
	cur  atomic.Pointer[database]

	mu     sync.Mutex // serialises Reload and Close
	closed bool
}

// ErrClosed is returned by Reload after Close.
var ErrClosed = errors.New("geo: locator is closed")

// Open reads the country database at path. The path "" gives a Locator
// without a database, whose every lookup is unknown. A file that is not a
// country database of a known layout is an error naming the file.
//
// The file is read whole into memory (8 MB for the default database, about
// 60 MB for GeoLite2-City); during a reload the old and the new version
// are both held until the last lookup on the old one returns.
func Open(path string) (*Locator, error) {
	l := &Locator{path: path}
	if path == "" {
		return l, nil
	}
	d, err := openDatabase(path)
	if err != nil {
		return nil, err
	}
	l.cur.Store(d)
	return l, nil
}

// Path returns the path given to Open.
func (l *Locator) Path() string { return l.path }

// BuildDate returns the current database's build date as "2006-01-02"
// (UTC), or "" when there is no database or it does not say.
func (l *Locator) BuildDate() string {
	if d := l.cur.Load(); d != nil {
		return d.buildDate
	}
	return ""
}

// Lookup finds the country of addr. IPv4-mapped addresses are unmapped and
// reserved addresses (see IsReserved) are unknown without asking the
// database. It does not allocate.
func (l *Locator) Lookup(addr netip.Addr) Result {
	addr = addr.Unmap()
	if l == nil || IsReserved(addr) {
		return unknown
	}
	d := l.cur.Load()
	if d == nil {
		return unknown
	}
	return d.lookup(addr)
}

// Reload reads the file again and swaps it in. If the new file cannot be
// read the current database stays and the error is returned. Lookups in
// flight finish on the database they started with; its memory is freed
// once the last of them has returned. With the path "" Reload does nothing.
func (l *Locator) Reload() error {
	if l.path == "" {
		return nil
	}
	// Opening under the lock keeps two reloads in order: one that opened
	// an older version of the file must not swap it in last.
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	d, err := openDatabase(l.path)
	if err != nil {
		return err
	}
	l.cur.Store(d)
	return nil
}

func (l *Locator) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// Close drops the database; its memory is freed once no lookup uses it.
// Lookups after Close are unknown, and Watch returns.
func (l *Locator) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	l.cur.Store(nil)
	return nil
}

// Watch checks the file's identity, size and modification time every
// interval (a minute if every <= 0) and reloads when they change, until ctx
// is done or the Locator is closed (without a file, only ctx ends it). A failure is logged once per version of
// the file, without any address, and the loaded database stays. Replace
// the file by renaming a complete new one over it, as geoipupdate does; a
// file rewritten in place cannot harm the loaded database, but may be seen
// half-written, fail, and load at the next poll after the write ends.
func (l *Locator) Watch(ctx context.Context, every time.Duration, log *slog.Logger) {
	if every <= 0 {
		every = time.Minute
	}
	if log == nil {
		log = slog.Default()
	}
	if l.path == "" {
		<-ctx.Done() // nothing to watch
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var failed stamp // the version that last failed to load
	statFailing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if l.isClosed() {
			return
		}
		fi, err := os.Stat(l.path)
		if err != nil {
			if !statFailing {
				log.Error("geo: cannot read the country database; keeping the loaded one", "path", l.path, "err", err)
				statFailing = true
			}
			continue
		}
		statFailing = false
		now := stampOf(fi)
		if d := l.cur.Load(); d != nil && d.stamp.same(now) || failed.same(now) {
			continue
		}
		switch err := l.Reload(); {
		case errors.Is(err, ErrClosed):
			return
		case err != nil:
			failed = now
			log.Error("geo: reloading the country database failed; keeping the loaded one", "path", l.path, "err", err)
		default:
			failed = stamp{}
			log.Info("geo: country database reloaded", "path", l.path, "build_date", l.BuildDate())
		}
	}
}

// stamp tells versions of a file apart.
type stamp struct {
	fi   os.FileInfo
	size int64
	mod  time.Time
}

func stampOf(fi os.FileInfo) stamp { return stamp{fi, fi.Size(), fi.ModTime()} }

func (s stamp) same(o stamp) bool {
	return s.fi != nil && o.fi != nil && os.SameFile(s.fi, o.fi) && s.size == o.size && s.mod.Equal(o.mod)
}

// layout is how a database's records name the country.
type layout int

const (
	layoutIPLocation layout = iota + 1 // {"country_code": "DE"}
	layoutMaxMind                      // {"country": {"iso_code": "DE", "is_in_european_union": true}, …}
)

func (l layout) String() string {
	switch l {
	case layoutIPLocation:
		return "ip-location-db"
	case layoutMaxMind:
		return "MaxMind GeoIP2/GeoLite2"
	}
	return "unknown"
}

// cacheSize is the number of decoded records a database keeps, 64 KiB.
// A country database has a few hundred distinct records (251 in the
// default one), so after warm-up every lookup is a hit; a City database has
// more and the rest are decoded on each lookup, which allocates nothing
// once the decode pool is warm.
const (
	cacheBits  = 13
	cacheSize  = 1 << cacheBits
	cacheProbe = 8
)

// database is one version of the file, read whole into memory.
//
// It is read rather than memory-mapped so that nothing done to the file
// can reach a loaded database: a file truncated or rewritten in place
// (cp over it) would change a mapping under running lookups, and touching
// a truncated mapping kills the process with SIGBUS. Being plain heap
// memory, a database is never closed: the garbage collector frees it when
// the last lookup that loaded the pointer has returned — the reference
// count the runtime keeps anyway, at no cost to the lookup and without
// any window in which a lookup could use a closed reader.
type database struct {
	reader    *maxminddb.Reader
	layout    layout
	buildDate string
	stamp     stamp

	// cache maps a record's data offset to its decoded country. An entry
	// is key<<16 | eu<<10 | country index+1 (0: no country), with key the
	// offset+1, so 0 is an empty slot. Slots are filled once and never
	// change, so a reader either sees nothing or the whole entry.
	cache [cacheSize]atomic.Uint64
}

const (
	entryEU      = 1 << 10
	entryCountry = 1<<10 - 1
	maxKey       = 1<<48 - 1
)

func openDatabase(path string) (*database, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("geo: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat() // the stamp of exactly the file read
	if err != nil {
		return nil, fmt.Errorf("geo: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("geo: %s is not a readable .mmdb file: not a regular file", path)
	}
	buf := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil, fmt.Errorf("geo: %s is not a readable .mmdb file: %w", path, err)
	}
	r, err := maxminddb.OpenBytes(buf)
	if err != nil {
		return nil, fmt.Errorf("geo: %s is not a readable .mmdb file: %w", path, err)
	}
	lay, err := detectLayout(r)
	if err != nil {
		return nil, fmt.Errorf("geo: %s: %w", path, err)
	}
	d := &database{reader: r, layout: lay, stamp: stampOf(fi)}
	if epoch := r.Metadata.BuildEpoch; epoch > 0 {
		d.buildDate = time.Unix(int64(epoch), 0).UTC().Format(time.DateOnly)
	}
	return d, nil
}

func (d *database) lookup(addr netip.Addr) Result {
	r := d.reader.Lookup(addr)
	if r.Err() != nil || !r.Found() {
		return Result{Source: SourceUnknown, BuildDate: d.buildDate}
	}
	key := uint64(r.Offset()) + 1
	h := (key * 0x9e3779b97f4a7c15) >> (64 - cacheBits)
	for i := range uint64(cacheProbe) {
		slot := &d.cache[(h+i)&(cacheSize-1)]
		e := slot.Load()
		if e>>16 == key {
			return d.result(e)
		}
		if e == 0 {
			e = key<<16 | d.decode(r)
			if key <= maxKey {
				slot.CompareAndSwap(0, e) // a lost race stored the same value
			}
			return d.result(e)
		}
	}
	return d.result(d.decode(r))
}

func (d *database) result(e uint64) Result {
	c := int(e & entryCountry)
	if c == 0 {
		return Result{Source: SourceUnknown, BuildDate: d.buildDate}
	}
	return Result{Country: codeString(c - 1), EU: e&entryEU != 0, Source: SourceGeoIP, BuildDate: d.buildDate}
}

// Records are decoded into pooled values: Decode takes an interface, so a
// fresh value per lookup would escape to the heap.
type ipLocationRecord struct {
	CountryCode string `maxminddb:"country_code"`
}

type maxMindCountry struct {
	ISOCode string `maxminddb:"iso_code"`
	IsInEU  bool   `maxminddb:"is_in_european_union"`
}

type maxMindRecord struct {
	Country           maxMindCountry `maxminddb:"country"`
	RegisteredCountry maxMindCountry `maxminddb:"registered_country"`
}

var (
	ipLocationPool = sync.Pool{New: func() any { return new(ipLocationRecord) }}
	maxMindPool    = sync.Pool{New: func() any { return new(maxMindRecord) }}
)

// decode returns the low bits of a cache entry for the record of r.
// A record that fails to decode has no country.
func (d *database) decode(r maxminddb.Result) uint64 {
	switch d.layout {
	case layoutIPLocation:
		rec := ipLocationPool.Get().(*ipLocationRecord)
		defer ipLocationPool.Put(rec)
		*rec = ipLocationRecord{}
		if r.Decode(rec) != nil {
			return 0
		}
		if i, ok := countryIndex(rec.CountryCode); ok {
			e := uint64(i + 1)
			if euCodes[i] {
				e |= entryEU
			}
			return e
		}
	case layoutMaxMind:
		rec := maxMindPool.Get().(*maxMindRecord)
		defer maxMindPool.Put(rec)
		*rec = maxMindRecord{}
		if r.Decode(rec) != nil {
			return 0
		}
		for _, c := range [...]maxMindCountry{rec.Country, rec.RegisteredCountry} {
			if i, ok := countryIndex(c.ISOCode); ok {
				e := uint64(i + 1)
				if c.IsInEU {
					e |= entryEU
				}
				return e
			}
		}
	}
	return 0
}

// probeRecords bounds how many records detectLayout reads before giving up.
const probeRecords = 4096

// detectLayout reads records from the start of the database until one
// names a country in either layout. A MaxMind-shaped country (a map)
// wins over country_code, since ipinfo-style files carry "country" as a
// name and country_code as the code.
func detectLayout(r *maxminddb.Reader) (layout, error) {
	n := 0
	for res := range r.Networks() {
		var rec map[string]any
		if err := res.Decode(&rec); err != nil {
			return 0, fmt.Errorf("cannot decode a record: %w", err)
		}
		for _, key := range []string{"country", "registered_country"} {
			if m, ok := rec[key].(map[string]any); ok {
				if _, ok := m["iso_code"].(string); ok {
					return layoutMaxMind, nil
				}
			}
		}
		if _, ok := rec["country_code"].(string); ok {
			return layoutIPLocation, nil
		}
		if n++; n >= probeRecords {
			break
		}
	}
	return 0, fmt.Errorf("database type %q is neither a MaxMind GeoIP2/GeoLite2 Country or City database "+
		"(country.iso_code) nor an ip-location-db country database (country_code): "+
		"none of its first %d records names a country", r.Metadata.DatabaseType, probeRecords)
}
