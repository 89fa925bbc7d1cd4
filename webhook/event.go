// Package webhook tells the systems that use Assent's consents — a
// newsletter tool, a CRM, a shop — of every consent change, as signed HTTP
// POSTs (Standard Webhooks 1.0). It decides which events a record or an
// erasure causes (RecordEvents, the one place for that rule), fans each
// event out to the subscribed endpoints as durable outbox items written in
// the same transaction as the record, and delivers them: one sender per
// endpoint, in record order, retried on a schedule, never to a private or
// loopback address unless allowed.
//
// It is not an HTTP API (server calls it) and stores nothing itself: the
// endpoints and the outbox are the ledger's (store).
package webhook

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/assent/assent/store"
)

// Event types.
const (
	ConsentRecorded  = "consent.recorded"  // every banner or settings record
	SignupCreated    = "signup.created"    // every signup record
	SignupConfirmed  = "signup.confirmed"  // a double opt-in confirmation
	ConsentWithdrawn = "consent.withdrawn" // every withdraw record, from any source
	SubjectErased    = "subject.erased"    // an erasure (GDPR Art. 17 and 19)
	TestEvent        = "webhook.test"      // the console's "send test event"
)

// Types are the event types an endpoint may subscribe to.
var Types = []string{ConsentRecorded, SignupCreated, SignupConfirmed, ConsentWithdrawn, SubjectErased}

// Kind is the outbox kind of webhook deliveries.
const Kind = "webhook"

// RecordEvents is the one rule that says which webhook events a stored
// record causes. A settings change that withdraws a purpose is both a
// settings record and a withdrawal, so it causes both events; a
// rectification causes none.
func RecordEvents(rec store.Record) []string {
	var out []string
	switch {
	case rec.Tombstone:
		return nil
	case rec.Event == "confirm":
		out = append(out, SignupConfirmed)
	case rec.Source == "signup":
		out = append(out, SignupCreated)
	case rec.Source == "banner" || rec.Source == "preferences" || rec.Source == "api":
		out = append(out, ConsentRecorded)
	}
	if rec.Event == "withdraw" {
		out = append(out, ConsentWithdrawn)
	}
	return out
}

// Body is what a delivery POSTs. Data is the record as in the JSON Lines
// export (plus unsubscribe_url), the erased subject, or a test message.
type Body struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      any       `json:"data"`
}

// RecordData is a record event's data.
type RecordData struct {
	store.Record
	UnsubscribeURL string `json:"unsubscribe_url,omitempty"`
}

// payload is an outbox item's payload: the event id (webhook-id) and the
// exact body to sign and send, the same on every attempt.
type payload struct {
	EventID string          `json:"event_id"`
	Type    string          `json:"type"`
	Body    json.RawMessage `json:"body"`
}

func newEventID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return "evt_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

// subscribed tells whether ep wants events of typ about sites (nil sites:
// an event of no particular site, such as the erasure of a person with no
// records here, goes to every endpoint that wants the type).
func subscribed(ep store.WebhookEndpoint, typ string, sites []string) bool {
	if !slices.Contains(ep.Events, typ) {
		return false
	}
	if len(ep.Sites) == 0 || len(sites) == 0 {
		return true
	}
	for _, s := range sites {
		if slices.Contains(ep.Sites, s) {
			return true
		}
	}
	return false
}

// fanOut makes one outbox item per subscribed endpoint for one event,
// ordered per endpoint.
func fanOut(eps []store.WebhookEndpoint, typ, site string, sites []string, at time.Time, data any) ([]store.OutboxItem, error) {
	var items []store.OutboxItem
	var raw []byte
	for _, ep := range eps {
		if !subscribed(ep, typ, sites) {
			continue
		}
		if raw == nil {
			body, err := json.Marshal(Body{Type: typ, Timestamp: at.UTC(), Data: data})
			if err != nil {
				return nil, err
			}
			if raw, err = json.Marshal(payload{EventID: newEventID(), Type: typ, Body: body}); err != nil {
				return nil, err
			}
		}
		items = append(items, store.OutboxItem{Kind: Kind, Site: site, Key: ep.ID, Ordered: true, Payload: raw})
	}
	return items, nil
}
