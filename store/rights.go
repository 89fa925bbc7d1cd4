package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"time"
	"unicode"

	bolt "go.etcd.io/bbolt"
)

// Rights a person exercises by asking an admin (by mail, phone, letter)
// rather than through the widget: objection to direct marketing (Art. 21(3)
// GDPR: a withdrawal on request) and rectification (Art. 16). Each is a
// chained record with source "admin" and the admin's reason, written with
// the audit entry naming the acting token or user in one transaction.
//
// A rectify record names the person's current address (Email) and the
// corrected one (NewEmail), both personal: the hash covers their digests and
// erasure blanks them. The record is filed in the subject index under both
// addresses, so a look-up of either reaches it and through it every record
// of the other (resolve follows rectify records both ways), the signups
// export shows one row under the newest address, and an erasure of either
// address erases and suppresses them all. The records made before keep the
// address submitted then: they are the proof of what was submitted.

// Rights is what every backend of the Ledger offers for requests an admin
// records on a person's behalf; the bbolt Store's methods below document
// each. Backends build the records with WithdrawalRecords and
// RectifyRecords, so the rules stay written once.
type Rights interface {
	WithdrawOnRequest(ctx context.Context, actor string, w Withdrawal, opts AppendOptions) ([]Record, error)
	Rectify(ctx context.Context, actor string, r Rectification, opts AppendOptions) ([]Record, error)
}

var _ Rights = (*Store)(nil)

// ErrSubjectExists: a rectification to an address that already has records
// (two people, or one person twice: an admin must look first).
var ErrSubjectExists = errors.New("the new address already has records")

// Withdrawal is a person's request to withdraw consent, made to an admin.
// Empty Sites or Purposes mean all of them.
type Withdrawal struct {
	Email    string   `json:"email"`
	Sites    []string `json:"sites"`
	Purposes []string `json:"purposes"`
	Reason   string   `json:"reason"`
}

// Rectification is a person's request to correct their address (and name).
type Rectification struct {
	Email    string `json:"email"`
	NewEmail string `json:"new_email"`
	Name     string `json:"name"`
	Reason   string `json:"reason"`
}

// RectifyNote is what a rectification answers about the proof it keeps.
const RectifyNote = "Art. 16 GDPR: the address is corrected from now on: look-ups by either address find every record, " +
	"and the signups export and the subject state show the new address. The records made before keep the address " +
	"submitted then, unchanged, because they are the proof of what was submitted and consented to (Art. 7(1), " +
	"Art. 17(3)(e) GDPR); the rectify record links both addresses in the hash chain. Erasing either address erases both."

// CheckEmail accepts a bare address (no display name) of at most 254 bytes,
// as net/mail parses it, and returns it normalised; field names it in the
// error (a *ValidationError with code invalid_email).
func CheckEmail(field, raw string) (string, error) {
	s := strings.TrimSpace(raw)
	bad := func(format string, args ...any) (string, error) {
		e := invalid(field, format, args...)
		e.Code = "invalid_email"
		return "", e
	}
	switch {
	case s == "":
		return bad("required")
	case len(s) > 254:
		return bad("at most 254 bytes")
	case strings.ContainsAny(s, "\r\n"):
		return bad("must be one line")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return bad("%s", strings.TrimPrefix(err.Error(), "mail: "))
	}
	if a.Name != "" || a.Address != s {
		return bad("give the address alone, without a name or brackets")
	}
	return NormalizeEmail(s), nil
}

// checkText accepts a required or optional one-paragraph text.
func checkText(field, s string, max int, required bool) (string, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "" && required:
		return "", invalid(field, "required: say who asked, how and when (e.g. \"asked by mail on 2026-11-20\")")
	case len([]rune(s)) > max:
		return "", invalid(field, "at most %d characters", max)
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }) >= 0:
		return "", invalid(field, "control characters are not allowed")
	}
	return s, nil
}

const maxReason = 1000

func (w *Withdrawal) check() error {
	var err error
	if w.Email, err = CheckEmail("email", w.Email); err != nil {
		return err
	}
	if w.Reason, err = checkText("reason", w.Reason, maxReason, true); err != nil {
		return err
	}
	return nil
}

func (r *Rectification) check() error {
	var err error
	if r.Email, err = CheckEmail("email", r.Email); err != nil {
		return err
	}
	if r.NewEmail, err = CheckEmail("new_email", r.NewEmail); err != nil {
		return err
	}
	if r.NewEmail == r.Email {
		return invalid("new_email", "is the same address as email")
	}
	if r.Name, err = checkText("name", r.Name, 200, false); err != nil {
		return err
	}
	if r.Reason, err = checkText("reason", r.Reason, maxReason, true); err != nil {
		return err
	}
	return nil
}

func unknown(code, field, format string, args ...any) *ValidationError {
	e := invalid(field, format, args...)
	e.Code = code
	return e
}

// WithdrawalRecords decides the records of a withdrawal on request, given
// every site and the person's look-up (records and state): one withdraw
// record per site the person has records on (of w.Sites, when given), each
// denying the purposes asked for (all but the required ones when none is
// named) and naming no other, with source "admin", the
// reason and the person's current address. Errors: a *ValidationError (bad
// address or reason, a site or purpose that does not exist, a required
// purpose), ErrSuppressed for an erased person, ErrNotFound when the person
// has no records (on those sites).
func WithdrawalRecords(w Withdrawal, sites []Site, recs []Record, st SubjectState) ([]Record, error) {
	if err := w.check(); err != nil {
		return nil, err
	}
	byID := map[string]Site{}
	for _, s := range sites {
		byID[s.ID] = s
	}
	chosen := slices.Compact(slices.Sorted(slices.Values(w.Sites)))
	for _, id := range chosen {
		if _, ok := byID[id]; !ok {
			return nil, unknown("unknown_site", "sites", "no site %q", id)
		}
	}
	for _, p := range w.Purposes {
		found := false
		for _, id := range chosen {
			for _, sp := range byID[id].Purposes {
				found = found || sp.ID == p
			}
		}
		if len(chosen) == 0 {
			for _, s := range sites {
				for _, sp := range s.Purposes {
					found = found || sp.ID == p
				}
			}
		}
		if !found {
			return nil, unknown("unknown_purpose", "purposes", "no site named here has a purpose %q", p)
		}
	}
	if st.Suppressed {
		return nil, ErrSuppressed
	}
	if len(chosen) == 0 {
		chosen = slices.Sorted(func(yield func(string) bool) {
			for id := range st.Purposes {
				if !yield(id) {
					return
				}
			}
		})
	}
	var out []Record
	for _, id := range chosen {
		site, ok := byID[id]
		if _, has := st.Purposes[id]; !ok || !has {
			continue
		}
		// Like an unsubscribe, the record names only what it withdraws,
		// so it shows what was asked for; the person's other states stand.
		choices := map[string]string{}
		n := 0
		for _, p := range site.Purposes {
			if len(w.Purposes) > 0 && !slices.Contains(w.Purposes, p.ID) {
				continue
			}
			if p.Required {
				if len(w.Purposes) > 0 {
					return nil, invalid("purposes", "%q is required on site %q: it is not a consent and cannot be withdrawn", p.ID, id)
				}
				continue
			}
			choices[p.ID] = "denied"
			n++
		}
		if n == 0 {
			continue
		}
		out = append(out, Record{Site: id, Event: "withdraw", Source: "admin", Basis: "explicit",
			Email: st.Email, NoticeVersion: site.PolicyVersion, Choices: choices, Reason: w.Reason})
	}
	if len(out) == 0 {
		if len(recs) == 0 {
			return nil, fmt.Errorf("no records of that address: %w", ErrNotFound)
		}
		return nil, fmt.Errorf("no records of that address on the sites and purposes named: %w", ErrNotFound)
	}
	return out, nil
}

// RectifyRecords decides the records of a rectification, given every site
// and the person's look-up by r.Email: one rectify record per site the
// person has records on, naming their current address and the new one (and
// the new name, if given), with source "admin" and the reason. Errors: a
// *ValidationError, ErrSuppressed for an erased person, ErrNotFound when the
// old address has no records. Whether the new address is free is decided
// by the writer, in the records' own transaction (ErrSubjectExists,
// ErrSuppressed).
func RectifyRecords(r Rectification, sites []Site, recs []Record, st SubjectState) ([]Record, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	if st.Suppressed {
		return nil, ErrSuppressed
	}
	byID := map[string]Site{}
	for _, s := range sites {
		byID[s.ID] = s
	}
	var out []Record
	for _, id := range slices.Sorted(func(yield func(string) bool) {
		for id := range st.Purposes {
			if !yield(id) {
				return
			}
		}
	}) {
		site, ok := byID[id]
		if !ok {
			continue
		}
		out = append(out, Record{Site: id, Event: "rectify", Source: "admin", Email: st.Email,
			NewEmail: r.NewEmail, Name: r.Name, NoticeVersion: site.PolicyVersion, Choices: map[string]string{}, Reason: r.Reason})
	}
	if len(out) == 0 || st.Email == "" {
		return nil, fmt.Errorf("no records of that address: %w", ErrNotFound)
	}
	return out, nil
}

// rightsReq is what a withdrawal or rectification adds to its records'
// append requests: they commit in one transaction with their audit entry.
type rightsReq struct {
	group  []*appendReq // the leader's followers, committed in its batch
	leader *appendReq   // the group's first request; nil for the leader
	failed error        // the leader's refusal, which refuses the whole group
	// free, on the leader of a rectification, is the new address's digest:
	// it must have no records and not be suppressed.
	free []byte
	// The audit entry, on the group's last request.
	actor, action, detail string
}

// withGroup adds a request and the records of its group to a batch.
func (req *appendReq) withGroup(batch []*appendReq) []*appendReq {
	batch = append(batch, req)
	if req.rights != nil {
		batch = append(batch, req.rights.group...)
	}
	return batch
}

// checkRights refuses, in the writer's transaction, a group whose person
// was erased in the meantime or whose new address is taken; the group's
// other records share the leader's answer.
func (req *appendReq) checkRights(tx *bolt.Tx) (refused bool, err error) {
	rr := req.rights
	if rr == nil {
		return false, nil
	}
	if rr.leader != nil {
		err = rr.leader.rights.failed
		return err != nil, err
	}
	sup := tx.Bucket(bucketSuppression)
	switch {
	case req.subject == nil || sup.Get(req.subject) != nil:
		err = ErrSuppressed
	case rr.free != nil && sup.Get(rr.free) != nil:
		err = fmt.Errorf("new_email: %w", ErrSuppressed)
	case rr.free != nil:
		if k, _ := tx.Bucket(bucketSubjects).Cursor().Seek(rr.free); k != nil && bytes.HasPrefix(k, rr.free) {
			err = ErrSubjectExists
		}
	}
	rr.failed = err
	return err != nil, err
}

// auditRights writes the group's audit entry after its last record.
func (req *appendReq) auditRights(tx *bolt.Tx, now time.Time) error {
	if req.rights == nil || req.rights.actor == "" {
		return nil
	}
	return putAudit(tx, now, req.rights.actor, req.rights.action, req.rights.detail)
}

// appendRights commits records as one group with an audit entry and
// returns them as stored.
func (s *Store) appendRights(ctx context.Context, recs []Record, rr rightsReq, opts AppendOptions) ([]Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Once queued, the group commits whole: no record of it is skipped for
	// a context that ends meanwhile.
	ctx = context.WithoutCancel(ctx)
	reqs := make([]*appendReq, len(recs))
	for i, rec := range recs {
		reqs[i] = s.newAppendReq(ctx, rec, nil)
		reqs[i].outbox = opts.Outbox
		reqs[i].rights = &rightsReq{}
		if i > 0 {
			reqs[i].rights.leader = reqs[0]
		}
	}
	reqs[0].rights.group, reqs[0].rights.free = reqs[1:], rr.free
	last := reqs[len(reqs)-1].rights
	last.actor, last.action, last.detail = rr.actor, rr.action, rr.detail
	s.mu.RLock()
	if s.closed || s.queue == nil {
		s.mu.RUnlock()
		if s.queue == nil {
			return nil, fmt.Errorf("append: ledger %s is open read-only", s.path)
		}
		return nil, ErrClosed
	}
	s.queue <- reqs[0]
	s.mu.RUnlock()
	out := make([]Record, len(reqs))
	var first error
	for i, req := range reqs {
		res := <-req.done
		out[i] = res.rec
		if res.err != nil && first == nil {
			first = res.err
		}
	}
	if first != nil {
		return nil, first
	}
	return out, nil
}

// decide looks the person up by address and lets rule make their records
// from every site and the look-up.
func (s *Store) decide(email string, rule func([]Site, []Record, SubjectState) ([]Record, error)) ([]Record, error) {
	recs, st, err := s.Lookup(SubjectRef{Email: email})
	if err != nil {
		return nil, err
	}
	sites, err := s.Sites()
	if err != nil {
		return nil, err
	}
	return rule(sites, recs, st)
}

// WithdrawOnRequest records a withdrawal a person asked an admin for (see
// WithdrawalRecords): the withdraw records and the audit entry naming
// actor (counts and sites only, never the person or the reason) commit in
// one transaction; opts.Outbox queues each record's outbox items (webhooks)
// in it too.
func (s *Store) WithdrawOnRequest(ctx context.Context, actor string, w Withdrawal, opts AppendOptions) ([]Record, error) {
	if err := w.check(); err != nil {
		return nil, err
	}
	out, err := s.decide(w.Email, func(sites []Site, recs []Record, st SubjectState) ([]Record, error) {
		return WithdrawalRecords(w, sites, recs, st)
	})
	if err != nil {
		return nil, err
	}
	return s.appendRights(ctx, out, rightsReq{actor: actor, action: "withdraw", detail: WithdrawAuditDetail(out)}, opts)
}

// Rectify records a correction of a person's address (see RectifyRecords
// and the comment at the top of this file): the rectify records and the
// audit entry commit in one transaction, after the writer checked there
// that the new address has no records (ErrSubjectExists) and is not
// suppressed (ErrSuppressed).
func (s *Store) Rectify(ctx context.Context, actor string, r Rectification, opts AppendOptions) ([]Record, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	out, err := s.decide(r.Email, func(sites []Site, recs []Record, st SubjectState) ([]Record, error) {
		return RectifyRecords(r, sites, recs, st)
	})
	if err != nil {
		return nil, err
	}
	return s.appendRights(ctx, out, rightsReq{actor: actor, action: "rectify", detail: RectifyAuditDetail(out),
		free: s.subjectDigest(r.NewEmail)}, opts)
}

// WithdrawAuditDetail is the audit entry of a withdrawal on request: the
// sites and purposes, never the person or the reason.
func WithdrawAuditDetail(recs []Record) string {
	parts := make([]string, len(recs))
	for i, r := range recs {
		var denied []string
		for _, k := range sortedKeys(r.Choices) {
			if r.Choices[k] == "denied" {
				denied = append(denied, k)
			}
		}
		parts[i] = r.Site + ": " + strings.Join(denied, ",")
	}
	return fmt.Sprintf("withdrawal on request: %d records (%s)", len(recs), strings.Join(parts, "; "))
}

// RectifyAuditDetail is the audit entry of a rectification: counts and
// sites only.
func RectifyAuditDetail(recs []Record) string {
	sites := make([]string, len(recs))
	for i, r := range recs {
		sites[i] = r.Site
	}
	return fmt.Sprintf("rectification on request: %d records (%s)", len(recs), strings.Join(sites, ", "))
}

// NewEmailDigest is the digest a rectify record is also filed under in the
// subject index (the new address's subject digest), or nil.
func (p *PendingRecord) NewEmailDigest() []byte { return p.req.rec.digests.newEmail }

// NewEmailDigest of a stored rectify record, for the subject index.
func (s *StoredRecord) NewEmailDigest() []byte { return s.r.digests.newEmail }

// currentEmail is the address the latest rectify record among a person's
// records (oldest first) corrected to, or "" when there is none (or it was
// erased).
func currentEmail(recs []personRecord) string {
	for i := len(recs) - 1; i >= 0; i-- {
		if r := recs[i].rec; r.Event == "rectify" && r.digests.newEmail != nil {
			return r.NewEmail
		}
	}
	return ""
}

// linkedAddresses follows the rectify records filed under an address
// digest to every address of the person, in the subject index only (the
// signups export's view: what names an address, not the browsers'
// choices). It returns their records (oldest first, tombstones left out),
// the digests and the current one: the digest no rectify record corrected
// away from.
func linkedAddresses(tx *bolt.Tx, subject []byte) ([]Record, [][]byte, []byte, error) {
	return linkedAddressesIn(boltIndex{tx}, subject)
}

// LinkedAddresses is linkedAddresses for other backends.
func (k *Keyring) LinkedAddresses(ix PersonIndex, subject []byte) ([]Record, [][]byte, []byte, error) {
	return linkedAddressesIn(exportedIndex{ix}, subject)
}

// HasRectify tells whether a person's records include a rectification.
func HasRectify(recs []Record) bool { return hasRectify(recs) }

func linkedAddressesIn(ix personIndex, subject []byte) ([]Record, [][]byte, []byte, error) {
	digests := [][]byte{subject}
	seen := map[string]bool{string(subject): true}
	byID := map[string]bool{}
	var recs []personRecord
	from := map[string]bool{}
	for i := 0; i < len(digests); i++ {
		list, err := ix.indexRecords(bucketSubjects, digests[i])
		if err != nil {
			return nil, nil, nil, err
		}
		for _, r := range list {
			if byID[string(r.id)] {
				continue
			}
			byID[string(r.id)] = true
			recs = append(recs, r)
			if d := r.rec.digests; d.newEmail != nil {
				from[string(d.email)] = true
				for _, e := range [][]byte{d.email, d.newEmail} {
					if e != nil && !seen[string(e)] {
						seen[string(e)] = true
						digests = append(digests, e)
					}
				}
			}
		}
	}
	slices.SortFunc(recs, func(a, b personRecord) int { return bytes.Compare(a.id, b.id) })
	out := make([]Record, len(recs))
	for i, r := range recs {
		out[i] = r.rec.Record
	}
	var current []byte
	for _, d := range digests {
		if !from[string(d)] {
			current = d
		}
	}
	return out, digests, current, nil
}

// rectifiedTo is the address the latest rectify record among recs (oldest
// first) names as the new one, or "".
func rectifiedTo(recs []Record) string {
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Event == "rectify" && recs[i].NewEmail != "" {
			return recs[i].NewEmail
		}
	}
	return ""
}

func hasRectify(recs []Record) bool {
	return slices.ContainsFunc(recs, func(r Record) bool { return r.Event == "rectify" })
}
