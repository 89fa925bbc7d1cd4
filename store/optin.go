package store

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Double opt-in. A signup on a site with double opt-in is appended with the
// step "pending" (AppendOptions.OptIn) and its confirmation mail in the
// outbox, in one transaction. The mail's link carries a confirmation token
// naming the site and the signup's record id; Confirm appends a chained
// "confirm" record (source "double_opt_in", Confirms = the signup's id) with
// the step "confirmed". The optin/ bucket keeps, per person and site, the
// state the signups export shows; the records are the proof.

// ConfirmTTL is how long a confirmation link is valid.
const ConfirmTTL = 7 * 24 * time.Hour

// Errors of Confirm.
var (
	ErrTokenExpired = errors.New("confirmation link expired")
)

// AlreadyConfirmedError is Confirm's answer for a signup confirmed before:
// nothing new is stored; ID and At name the confirm record.
type AlreadyConfirmedError struct {
	ID string
	At time.Time
}

func (e *AlreadyConfirmedError) Error() string { return "signup already confirmed by record " + e.ID }

// SiteOptIn is one person's double-opt-in state on one site.
type SiteOptIn struct {
	State       string    `json:"state"` // pending, confirmed, expired
	SignupID    string    `json:"signup_id,omitempty"`
	PendingAt   time.Time `json:"pending_at,omitzero"`
	PendingIP   string    `json:"pending_ip,omitempty"`
	ConfirmID   string    `json:"confirm_id,omitempty"`
	ConfirmedAt time.Time `json:"confirmed_at,omitzero"`
	ConfirmedIP string    `json:"confirmed_ip,omitempty"`
}

// optInDoc is the whole optin/ value: the person's latest state (as
// SetDoubleOptIn and the subject view have it) and each site's.
type optInDoc struct {
	optIn
	Sites map[string]*SiteOptIn `json:"sites,omitempty"`
}

func parseOptIn(v []byte) (optInDoc, error) {
	d := optInDoc{optIn: optIn{State: "none"}}
	if v == nil {
		return d, nil
	}
	if err := json.Unmarshal(v, &d); err != nil {
		return d, fmt.Errorf("%w: double-opt-in state: %v", ErrCorrupt, err)
	}
	return d, nil
}

// OptInStep returns a person's stored double-opt-in state (JSON; nil for
// none) after rec made the step "pending" (rec is a signup) or "confirmed"
// (rec is a confirm record), or "expired" (rec names the site and, in
// Confirms, the signup whose link expired). Every backend stores what it
// returns in the transaction of the record.
func OptInStep(old []byte, step string, rec Record) ([]byte, error) {
	d, err := parseOptIn(old)
	if err != nil {
		return nil, err
	}
	if d.Sites == nil {
		d.Sites = map[string]*SiteOptIn{}
	}
	so := d.Sites[rec.Site]
	if so == nil {
		so = &SiteOptIn{}
		d.Sites[rec.Site] = so
	}
	switch step {
	case "pending":
		*so = SiteOptIn{State: "pending", SignupID: rec.ID, PendingAt: rec.RecordedAt, PendingIP: rec.IP}
		d.State, d.PendingAt, d.PendingIP = "pending", rec.RecordedAt, rec.IP
	case "confirmed":
		if so.SignupID != rec.Confirms { // a link of an earlier signup
			*so = SiteOptIn{SignupID: rec.Confirms}
		}
		so.State, so.ConfirmID, so.ConfirmedAt, so.ConfirmedIP = "confirmed", rec.ID, rec.RecordedAt, rec.IP
		d.State, d.ConfirmedAt, d.ConfirmedIP = "confirmed", rec.RecordedAt, rec.IP
	case "expired":
		if so.State != "pending" || so.SignupID != rec.Confirms {
			return old, nil // confirmed meanwhile, or a later signup waits
		}
		so.State = "expired"
		if d.State == "pending" {
			d.State = "expired"
		}
	default:
		return nil, invalid("double_opt_in", "%q is not a double-opt-in step", step)
	}
	return json.Marshal(d)
}

// OptInOnSite reads one site's entry of a stored state; ok is false when the
// person has none there.
func OptInOnSite(v []byte, site string) (SiteOptIn, bool, error) {
	d, err := parseOptIn(v)
	if err != nil || d.Sites[site] == nil {
		return SiteOptIn{}, false, err
	}
	return *d.Sites[site], true, nil
}

// confirmation tokens are base64url of
//
//	version 2 | site length (1 byte) | site | signup id (16) | MAC (16)
//
// MAC as for unsubscribe tokens (its own version byte keeps the two apart).
const confirmVersion = 2

// ConfirmToken makes the token of a signup's confirmation link.
func (k *Keyring) ConfirmToken(site, signupID string) string {
	id, err := parseID(signupID)
	if err != nil {
		return ""
	}
	b := append([]byte{confirmVersion, byte(len(site))}, site...)
	b = append(b, id...)
	return base64.RawURLEncoding.EncodeToString(append(b, k.unsubscribeMAC(b)...))
}

// ParseConfirmToken checks a confirmation token: the site and the signup
// record id it names, or ErrBadToken.
func (k *Keyring) ParseConfirmToken(token string) (site string, signupID []byte, err error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) < 2 || b[0] != confirmVersion || len(b) != 2+int(b[1])+idLen+16 {
		return "", nil, ErrBadToken
	}
	body, mac := b[:len(b)-16], b[len(b)-16:]
	m := hmac.New(sha256.New, k.unsubscribeKey)
	m.Write(body)
	if !hmac.Equal(mac, m.Sum(nil)[:16]) {
		return "", nil, ErrBadToken
	}
	return string(body[2 : 2+int(b[1])]), body[2+int(b[1]):], nil
}

// ConfirmRecord is the record a confirmation stores: the signup's site,
// person and signup purposes (granted, as the signup gave them), with the
// confirming click's meta (IP, user agent, …).
func ConfirmRecord(signup Record, meta Record) Record {
	rec := meta
	rec.Site, rec.Event, rec.Source, rec.Basis = signup.Site, "confirm", "double_opt_in", "explicit"
	rec.Email, rec.Name, rec.VisitorID, rec.Confirms = signup.Email, "", "", signup.ID
	rec.NoticeVersion, rec.NoticeHash, rec.Locale = signup.NoticeVersion, signup.NoticeHash, signup.Locale
	rec.Country, rec.Regime = meta.Country, meta.Regime
	rec.Choices = map[string]string{}
	for k, v := range signup.Choices {
		rec.Choices[k] = v
	}
	return rec
}

// Confirm checks a confirmation token and appends the signup's confirm
// record (ConfirmRecord), unless it was confirmed before
// (*AlreadyConfirmedError, nothing stored). A forged token, or one whose
// signup is gone (purged, or its site deleted), gives ErrBadToken; a token
// older than ConfirmTTL gives ErrTokenExpired and marks the signup expired.
func (s *Store) Confirm(ctx context.Context, token string, meta Record) (Record, error) {
	rec, _, err := s.ConfirmWith(ctx, token, meta, AppendOptions{})
	return rec, err
}

// ConfirmWith is Confirm plus what opts commits in the confirm record's
// transaction (its webhook events), like AppendWith; when nothing new is
// stored, nothing is queued.
func (s *Store) ConfirmWith(ctx context.Context, token string, meta Record, opts AppendOptions) (Record, []OutboxItem, error) {
	site, id, err := s.ParseConfirmToken(token)
	if err != nil {
		return Record{}, nil, err
	}
	var signup *storedRecord
	err = s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRecords).Bucket([]byte(site))
		if b == nil {
			return ErrBadToken
		}
		v := b.Get(id)
		if v == nil {
			return ErrBadToken
		}
		signup, err = decodeRecord(site, id, v)
		if err != nil {
			return fmt.Errorf("%w: record %s of site %s: %v", ErrCorrupt, formatID(id), site, err)
		}
		return nil
	})
	if err != nil {
		return Record{}, nil, err
	}
	if signup.Tombstone || signup.Source != "signup" || signup.Erased || signup.digests.email == nil {
		return Record{}, nil, ErrBadToken
	}
	rec := ConfirmRecord(signup.Record, meta)
	if s.now().Sub(signup.RecordedAt) > ConfirmTTL {
		// A link that expired is answered as such even after a later
		// confirmation; the state changes only while it is pending.
		err := s.update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketOptIn)
			v, err := OptInStep(b.Get(signup.digests.email), "expired", rec)
			if err != nil || v == nil {
				return err
			}
			return b.Put(signup.digests.email, v)
		})
		if err != nil {
			return Record{}, nil, err
		}
		return Record{}, nil, ErrTokenExpired
	}
	req := s.newAppendReq(ctx, rec, nil)
	req.optIn = "confirmed"
	req.outbox = opts.Outbox
	res := s.enqueue(req)
	return res.rec, res.outbox, res.err
}

// checkOptIn runs in the writer, before req's record is chained: a
// "confirmed" step for a signup confirmed before gives
// *AlreadyConfirmedError and the record is not appended.
func checkOptIn(tx *bolt.Tx, req *appendReq) error {
	if req.optIn != "confirmed" || req.subject == nil {
		return nil
	}
	so, ok, err := OptInOnSite(tx.Bucket(bucketOptIn).Get(req.subject), req.rec.Site)
	if err != nil {
		return err
	}
	if ok && so.State == "confirmed" && so.SignupID == req.rec.Confirms {
		return &AlreadyConfirmedError{ID: so.ConfirmID, At: so.ConfirmedAt}
	}
	return nil
}

// putOptIn stores the step the stored rec made, in its transaction.
func putOptIn(tx *bolt.Tx, req *appendReq, rec Record) error {
	if req.optIn == "" || req.subject == nil {
		return nil
	}
	b := tx.Bucket(bucketOptIn)
	v, err := OptInStep(b.Get(req.subject), req.optIn, rec)
	if err != nil {
		return err
	}
	return b.Put(req.subject, v)
}

// eraseOptIn removes the IP addresses from a person's double-opt-in state
// (the times stay: they are proof without personal data).
func eraseOptIn(tx *bolt.Tx, subject []byte) error {
	b := tx.Bucket(bucketOptIn)
	v := b.Get(subject)
	if v == nil {
		return nil
	}
	v, err := OptInErased(v)
	if err != nil {
		return err
	}
	return b.Put(subject, v)
}
