package store

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// Record ids are 16 bytes, written as 26 Crockford base32 characters like a
// ULID: 48 bits of Unix milliseconds, then 20 bits of the nanoseconds within
// that millisecond, then 60 random bits. The id therefore carries recorded_at
// to the nanosecond, sorts by time as bytes and as text, and a ULID parser
// reads the right millisecond. The writer makes every record's time strictly
// later than the one before, so ids never tie and key order is chain order.
const idLen = 16

func makeID(ns int64, rnd uint64) []byte {
	ms, sub := uint64(ns/1e6), uint64(ns%1e6)
	id := make([]byte, idLen)
	id[0], id[1], id[2], id[3], id[4], id[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	binary.BigEndian.PutUint16(id[6:], uint16(sub>>4))
	binary.BigEndian.PutUint64(id[8:], sub<<60|rnd&(1<<60-1))
	return id
}

// idTime is the Unix nanosecond time an id carries.
func idTime(id []byte) int64 {
	if len(id) != idLen {
		return 0
	}
	ms := uint64(id[0])<<40 | uint64(id[1])<<32 | uint64(id[2])<<24 | uint64(id[3])<<16 | uint64(id[4])<<8 | uint64(id[5])
	sub := uint64(binary.BigEndian.Uint16(id[6:]))<<4 | binary.BigEndian.Uint64(id[8:])>>60
	return int64(ms*1e6 + sub)
}

// idFloor is the smallest id at or after t, for range scans.
func idFloor(t time.Time) []byte {
	ns := t.UnixNano()
	if ns < 0 {
		ns = 0
	}
	return makeID(ns, 0)
}

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

func formatID(id []byte) string {
	if len(id) != idLen {
		return ""
	}
	hi, lo := binary.BigEndian.Uint64(id), binary.BigEndian.Uint64(id[8:])
	var out [26]byte
	// 130 bits of output, the top two always zero: walk from the low end.
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

func parseID(s string) ([]byte, error) {
	if len(s) != 26 {
		return nil, fmt.Errorf("record id %q: want 26 characters", s)
	}
	var hi, lo uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		v := indexByte(crockford, c)
		if v < 0 || (i == 0 && v > 7) {
			return nil, fmt.Errorf("record id %q: not Crockford base32", s)
		}
		hi = hi<<5 | lo>>59
		lo = lo<<5 | uint64(v)
	}
	id := make([]byte, idLen)
	binary.BigEndian.PutUint64(id, hi)
	binary.BigEndian.PutUint64(id[8:], lo)
	return id, nil
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// chainHead is a site's chains/ entry.
type chainHead struct {
	count uint64
	last  []byte // id of the last record
	hash  []byte // its hash, 32 bytes
}

func (h chainHead) encode() []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 8+idLen+sha256.Size), h.count)
	return append(append(b, h.last...), h.hash...)
}

func decodeHead(v []byte) (chainHead, error) {
	if len(v) != 8+idLen+sha256.Size {
		return chainHead{}, fmt.Errorf("chain head is %d bytes", len(v))
	}
	return chainHead{count: binary.BigEndian.Uint64(v), last: slices.Clone(v[8 : 8+idLen]), hash: slices.Clone(v[8+idLen:])}, nil
}

// digests are the keyed digests (HMAC-SHA256 with the ledger's digest key) of
// a record's personal fields. The record hash covers these instead of the
// fields, so erasing the fields leaves every hash valid. page_url is not among
// them: it is part of the proof (where consent was given) and is kept.
type digests struct {
	email, name, visitorID, ip, userAgent []byte // 32 bytes, or nil for an empty field
	// newEmail is a rectify record's new address, digested as an email
	// (field name "email"), so it equals that address's subject digest:
	// the index links both addresses by it even after erasure. Not in list.
	newEmail []byte
}

// personal names the fields that enter the hash only as digests and that
// erasure removes, in the order of the digests struct.
var personal = []string{"email", "name", "visitor_id", "ip", "user_agent"}

func (d *digests) list() []*[]byte {
	return []*[]byte{&d.email, &d.name, &d.visitorID, &d.ip, &d.userAgent}
}

func personalValues(r *Record) []string {
	return []string{r.Email, r.Name, r.VisitorID, r.IP, r.UserAgent}
}

// digester makes keyed digests: HMAC-SHA256(key, field || 0 || value). The
// field name keeps equal values in different fields from having equal
// digests. An empty value has no digest. It pools its HMAC states, which
// keep the key's padded blocks, so a digest costs two SHA-256 blocks and no
// set-up.
type digester struct{ pool sync.Pool }

type hmacState struct {
	mac hash.Hash
	buf []byte
}

func newDigester(key []byte) *digester {
	d := &digester{}
	d.pool.New = func() any { return &hmacState{mac: hmac.New(sha256.New, key)} }
	return d
}

// sum appends the digest to dst, or returns nil for an empty value.
func (d *digester) sum(dst []byte, field, value string) []byte {
	if value == "" {
		return nil
	}
	st := d.pool.Get().(*hmacState)
	st.buf = append(append(append(st.buf[:0], field...), 0), value...)
	st.mac.Reset()
	st.mac.Write(st.buf)
	dst = st.mac.Sum(dst)
	d.pool.Put(st)
	return dst
}

func (d *digester) digests(r *Record) digests {
	var ds digests
	buf := make([]byte, 0, len(personal)*sha256.Size)
	for i, p := range ds.list() {
		if sum := d.sum(buf, personal[i], personalValues(r)[i]); sum != nil {
			*p, buf = sum[len(buf):len(sum):len(sum)], sum
		}
	}
	ds.newEmail = d.sum(nil, "email", r.NewEmail)
	return ds
}

// Stored record layout (one bbolt value; the key is the id, the bucket the
// site, so neither is repeated):
//
//	byte 0   format version, 1
//	byte 1   flags: 1 erased, 2 tombstone, 4 gpc, 8 dnt, 16 confirms
//	then, each as uvarint length + bytes:
//	  tombstone: prev_hash, hash
//	  otherwise: event source basis email visitor_id country regime geo_db
//	             notice_version notice_hash widget_build locale page_url ip
//	             user_agent name, confirms (only with flag 16), uvarint count + (purpose, state) pairs in
//	             increasing purpose order, the five personal digests (0 or 32
//	             bytes each, order of personal), then reason (only with flag
//	             32), new_email and its 32-byte digest (only with flag 64),
//	             prev_hash (0 or 32), hash (32)
//
// The decoder accepts only what the encoder writes, so decode(encode(r)) is r.
const (
	codecVersion  = 1
	flagErased    = 1
	flagTombstone = 2
	flagGPC       = 4
	flagDNT       = 8
	flagConfirms  = 16 // a double opt-in confirmation: the confirmed signup's id follows name
	flagReason    = 32 // an admin's reason follows the digests (rights.go)
	flagNewEmail  = 64 // a rectify record's new address and its digest follow
)

// storedRecord is a record as the ledger keeps it.
type storedRecord struct {
	Record
	digests  digests
	prevHash []byte // raw; Record.PrevHash is its hex
	hash     []byte
}

func appendBytes(b, v []byte) []byte { return append(binary.AppendUvarint(b, uint64(len(v))), v...) }
func appendString(b []byte, v string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(v))), v...)
}

func encodeRecord(r *storedRecord) []byte {
	return appendTail(encodeBody(r), r.prevHash, r.hash)
}

// encodeBody encodes all of a record but its prev_hash and hash, which come
// last so that the writer can add them to a body prepared beforehand.
func encodeBody(r *storedRecord) []byte {
	tail := 2 + 2*sha256.Size
	if r.Tombstone {
		return append(make([]byte, 0, 2+tail), codecVersion, flagTombstone)
	}
	var flags byte
	if r.Erased {
		flags |= flagErased
	}
	if r.GPC {
		flags |= flagGPC
	}
	if r.DNT {
		flags |= flagDNT
	}
	if r.Confirms != "" {
		flags |= flagConfirms
	}
	if r.Reason != "" {
		flags |= flagReason
	}
	if r.digests.newEmail != nil {
		flags |= flagNewEmail
	}
	size := 2 + len(r.Confirms) + len(r.Reason) + len(r.NewEmail) + 2*(1+sha256.Size) + len(personal)*(1+sha256.Size) + tail
	for _, s := range r.strings() {
		size += 2 + len(*s)
	}
	for k, v := range r.Choices {
		size += 4 + len(k) + len(v)
	}
	b := make([]byte, 0, size)
	b = append(b, codecVersion, flags)
	for _, s := range r.strings() {
		b = appendString(b, *s)
	}
	if r.Confirms != "" {
		b = appendString(b, r.Confirms)
	}
	keys := sortedKeys(r.Choices)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(appendString(b, k), r.Choices[k])
	}
	for _, d := range r.digests.list() {
		b = appendBytes(b, *d)
	}
	if r.Reason != "" {
		b = appendString(b, r.Reason)
	}
	if r.digests.newEmail != nil {
		b = appendBytes(appendString(b, r.NewEmail), r.digests.newEmail)
	}
	return b
}

func appendTail(body, prevHash, hash []byte) []byte {
	return appendBytes(appendBytes(body, prevHash), hash)
}

// strings lists the record's string fields in stored order.
func (r *Record) strings() []*string {
	return []*string{&r.Event, &r.Source, &r.Basis, &r.Email, &r.VisitorID, &r.Country, &r.Regime,
		&r.GeoDB, &r.NoticeVersion, &r.NoticeHash, &r.WidgetBuild, &r.Locale, &r.PageURL, &r.IP,
		&r.UserAgent, &r.Name}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

var errCodec = errors.New("bad record encoding")

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || n != len(binary.AppendUvarint(nil, v)) {
		d.err = errCodec
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errCodec
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	v := d.bytes()
	if !utf8.Valid(v) {
		d.err = errCodec
	}
	return string(v)
}

// hashBytes reads a 32-byte hash, or an empty one where allowed.
func (d *decoder) hashBytes(optional bool) []byte {
	v := d.bytes()
	if len(v) == 0 && optional {
		return nil
	}
	if len(v) != sha256.Size {
		d.err = errCodec
		return nil
	}
	return slices.Clone(v)
}

// decodeRecord reads a stored value; site and id come from where it is
// stored. It copies everything out of val, which may be bbolt's memory.
func decodeRecord(site string, id, val []byte) (*storedRecord, error) {
	if len(id) != idLen {
		return nil, fmt.Errorf("%w: id is %d bytes", errCodec, len(id))
	}
	if len(val) < 2 || val[0] != codecVersion {
		return nil, fmt.Errorf("%w: unknown format", errCodec)
	}
	flags := val[1]
	r := &storedRecord{Record: Record{
		ID: formatID(id), Site: site, RecordedAt: time.Unix(0, idTime(id)).UTC(),
		Erased: flags&flagErased != 0, Tombstone: flags&flagTombstone != 0,
		GPC: flags&flagGPC != 0, DNT: flags&flagDNT != 0,
	}}
	d := &decoder{b: val[2:]}
	if r.Tombstone {
		if flags != flagTombstone {
			return nil, fmt.Errorf("%w: tombstone with flags %#x", errCodec, flags)
		}
	} else {
		if flags&^(flagErased|flagGPC|flagDNT|flagConfirms|flagReason|flagNewEmail) != 0 {
			return nil, fmt.Errorf("%w: unknown flags %#x", errCodec, flags)
		}
		for _, s := range r.strings() {
			*s = d.string()
		}
		if flags&flagConfirms != 0 {
			if r.Confirms = d.string(); r.Confirms == "" && d.err == nil {
				return nil, fmt.Errorf("%w: empty confirms", errCodec)
			}
		}
		n := d.uvarint()
		if n > uint64(len(d.b)) {
			return nil, fmt.Errorf("%w: %d choices", errCodec, n)
		}
		r.Choices = make(map[string]string, n)
		prev := ""
		for i := uint64(0); i < n && d.err == nil; i++ {
			k, v := d.string(), d.string()
			if i > 0 && k <= prev {
				return nil, fmt.Errorf("%w: choices out of order", errCodec)
			}
			r.Choices[k], prev = v, k
		}
		for _, p := range r.digests.list() {
			*p = d.hashBytes(true)
		}
		if flags&flagReason != 0 {
			if r.Reason = d.string(); r.Reason == "" && d.err == nil {
				return nil, fmt.Errorf("%w: empty reason", errCodec)
			}
		}
		if flags&flagNewEmail != 0 {
			r.NewEmail = d.string()
			r.digests.newEmail = d.hashBytes(false)
		}
	}
	r.prevHash = d.hashBytes(true)
	r.hash = d.hashBytes(false)
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errCodec, len(d.b))
	}
	r.PrevHash, r.Hash = hexOrEmpty(r.prevHash), hex.EncodeToString(r.hash)
	return r, nil
}

func hexOrEmpty(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return hex.EncodeToString(b)
}

// canonicalFormat names the canonical encoding; it is part of what is hashed.
const canonicalFormat = "assent-record-1"

// canonical is the byte string a record's hash covers: a JSON object in the
// JSON Canonicalization Scheme (RFC 8785) — keys sorted, no white space, only
// strings and booleans — so anyone can recompute a hash with any JCS library:
//
//	{"basis","choices":{purpose:state…},["confirms",]"country","dnt":bool,"email_digest",
//	 "event","format":"assent-record-1","geo_db","gpc":bool,"id",
//	 "ip_digest","locale","name_digest",["new_email_digest",]"notice_hash",
//	 "notice_version","page_url","prev_hash",["reason",]"recorded_at",
//	 "regime","site","source","user_agent_digest","visitor_id_digest",
//	 "widget_build"}
//
// "new_email_digest" (a rectify record's new address) and "reason" (an
// admin's reason for a withdrawal or rectification on request) are there
// only when set, and so is "confirms" (the id of the signup a double
// opt-in confirmation confirms): records without them hash as they always
// did.
// recorded_at is RFC 3339 UTC with exactly nine fractional digits; digests
// and prev_hash are lower-case hex, "" when the field (or the previous
// record) is absent. hash = hex(SHA-256(canonical)).
func canonical(r *storedRecord) []byte {
	t := newTemplate(r)
	return t.fill(make([]byte, 0, len(t.b)+160), r.ID, r.prevHash, r.RecordedAt)
}

func recordHash(r *storedRecord) []byte {
	t := newTemplate(r)
	return t.hash(r.ID, r.prevHash, r.RecordedAt)
}

// template is a record's canonical encoding with holes for the values that
// depend on its place in the chain: id, prev_hash and recorded_at. Callers
// of Append make it in their own goroutines; the one writer only fills the
// holes and hashes.
type template struct {
	b                  []byte
	idAt, prevAt, atAt int // offsets of the holes in b
}

func newTemplate(r *storedRecord) template {
	t := template{b: make([]byte, 0, 1024)}
	b := t.b
	field := func(name string) {
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(jcsString(b, name), ':')
	}
	str := func(name, v string) { field(name); b = jcsString(b, v) }
	hexField := func(name string, v []byte) {
		field(name)
		b = append(hex.AppendEncode(append(b, '"'), v), '"')
	}
	boolean := func(name string, v bool) { field(name); b = strconv.AppendBool(b, v) }
	b = append(b, '{')
	str("basis", r.Basis)
	field("choices")
	b = append(b, '{')
	for i, k := range jcsKeys(r.Choices) {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(jcsString(b, k), ':')
		b = jcsString(b, r.Choices[k])
	}
	b = append(b, '}')
	if r.Confirms != "" {
		str("confirms", r.Confirms)
	}
	str("country", r.Country)
	boolean("dnt", r.DNT)
	hexField("email_digest", r.digests.email)
	str("event", r.Event)
	str("format", canonicalFormat)
	str("geo_db", r.GeoDB)
	boolean("gpc", r.GPC)
	field("id")
	t.idAt = len(b)
	hexField("ip_digest", r.digests.ip)
	str("locale", r.Locale)
	hexField("name_digest", r.digests.name)
	if r.digests.newEmail != nil {
		hexField("new_email_digest", r.digests.newEmail)
	}
	str("notice_hash", r.NoticeHash)
	str("notice_version", r.NoticeVersion)
	str("page_url", r.PageURL)
	field("prev_hash")
	t.prevAt = len(b)
	if r.Reason != "" {
		str("reason", r.Reason)
	}
	field("recorded_at")
	t.atAt = len(b)
	str("regime", r.Regime)
	str("site", r.Site)
	str("source", r.Source)
	hexField("user_agent_digest", r.digests.userAgent)
	hexField("visitor_id_digest", r.digests.visitorID)
	str("widget_build", r.WidgetBuild)
	t.b = append(b, '}')
	return t
}

// fill appends the encoding with its holes filled to dst. The id is
// Crockford base32, so it needs no escaping; recorded_at is RFC 3339 UTC
// with exactly nine fractional digits.
func (t *template) fill(dst []byte, id string, prev []byte, at time.Time) []byte {
	dst = append(dst, t.b[:t.idAt]...)
	dst = append(append(append(dst, '"'), id...), '"')
	dst = append(dst, t.b[t.idAt:t.prevAt]...)
	dst = append(hex.AppendEncode(append(dst, '"'), prev), '"')
	dst = append(dst, t.b[t.prevAt:t.atAt]...)
	dst = append(at.UTC().AppendFormat(append(dst, '"'), "2006-01-02T15:04:05.000000000Z"), '"')
	return append(dst, t.b[t.atAt:]...)
}

var canonicalBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// hash is the SHA-256 of the filled encoding.
func (t *template) hash(id string, prev []byte, at time.Time) []byte {
	buf := canonicalBufs.Get().(*[]byte)
	*buf = t.fill((*buf)[:0], id, prev, at)
	h := sha256.Sum256(*buf)
	canonicalBufs.Put(buf)
	return h[:]
}

// jcsKeys sorts keys by their UTF-16 code units, as RFC 8785 §3.2.3 asks.
// That is byte order unless a key has characters beyond U+FFFF.
func jcsKeys(m map[string]string) []string {
	keys := sortedKeys(m)
	for _, k := range keys {
		for _, c := range k {
			if c > 0xFFFF {
				slices.SortFunc(keys, func(a, b string) int {
					return slices.Compare(utf16.Encode([]rune(a)), utf16.Encode([]rune(b)))
				})
				return keys
			}
		}
	}
	return keys
}

// jcsString writes s as RFC 8785 (ECMAScript JSON.stringify) does; s is valid
// UTF-8 (Append makes it so).
func jcsString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c >= 0x20:
			b = append(b, c)
		case c == '\b':
			b = append(b, '\\', 'b')
		case c == '\f':
			b = append(b, '\\', 'f')
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
		}
	}
	return append(b, '"')
}
