package store

import (
	"slices"
	"strings"
	"time"
)

// RightsReport is a plain summary of a person's records that an admin can
// send back as the answer to an access request (Art. 15, within the month
// Art. 12(3) allows): the current state per site and purpose and when each
// was given, withdrawn, confirmed or rectified, the requests recorded on
// the person's behalf, and what was erased.
type RightsReport struct {
	Email       string       `json:"email"` // the current address ("" once erased)
	Addresses   []string     `json:"addresses"`
	Records     int          `json:"records"`
	FirstAt     time.Time    `json:"first_at,omitzero"`
	LastAt      time.Time    `json:"last_at,omitzero"`
	DoubleOptIn string       `json:"double_opt_in"`
	Sites       []SiteReport `json:"sites"`
	// Requests are the withdrawals and rectifications an admin recorded on
	// the person's behalf, oldest first.
	Requests []RequestReport `json:"requests"`
	Erased   ErasedReport    `json:"erased"`
}

// SiteReport is the person's state on one site.
type SiteReport struct {
	Site        string          `json:"site"`
	Purposes    []PurposeReport `json:"purposes"`
	ConfirmedAt time.Time       `json:"confirmed_at,omitzero"` // the latest double opt-in confirmation
	RectifiedAt time.Time       `json:"rectified_at,omitzero"` // the latest rectification
}

// PurposeReport is one purpose's current state and its history.
type PurposeReport struct {
	Purpose string `json:"purpose"`
	State   string `json:"state"` // granted or denied
	// GivenAt is when the current (or, once withdrawn, the last) consent
	// was given; WithdrawnAt when it was last withdrawn, with the source of
	// that record (settings, unsubscribe, admin, …).
	GivenAt         time.Time `json:"given_at,omitzero"`
	GivenSource     string    `json:"given_source,omitempty"`
	WithdrawnAt     time.Time `json:"withdrawn_at,omitzero"`
	WithdrawnSource string    `json:"withdrawn_source,omitempty"`
	Record          string    `json:"record"` // id of the record that set the current state
}

// RequestReport is a withdrawal or rectification recorded on request.
type RequestReport struct {
	At       time.Time `json:"at"`
	Site     string    `json:"site"`
	Event    string    `json:"event"` // withdraw or rectify
	Record   string    `json:"record"`
	Reason   string    `json:"reason"`
	Purposes []string  `json:"purposes,omitempty"` // a withdrawal's purposes
	From     string    `json:"from,omitempty"`     // a rectification's old and new address ("" once erased)
	To       string    `json:"to,omitempty"`
}

// ErasedReport says what of the person was erased.
type ErasedReport struct {
	Records    int      `json:"records"` // records whose personal fields were removed
	Fields     []string `json:"fields"`  // which fields erasure removes
	Suppressed bool     `json:"suppressed"`
}

// Report summarises a person's look-up (records oldest first, and state).
func Report(recs []Record, st SubjectState) RightsReport {
	rep := RightsReport{Email: st.Email, Addresses: []string{}, Sites: []SiteReport{}, Requests: []RequestReport{},
		DoubleOptIn: st.DoubleOptIn, Erased: ErasedReport{Fields: erasedFields, Suppressed: st.Suppressed}}
	if rep.DoubleOptIn == "" {
		rep.DoubleOptIn = "none"
	}
	type track struct {
		site  *SiteReport
		index map[string]int
	}
	sites := map[string]*track{}
	var order []string
	for _, r := range recs {
		if r.Tombstone {
			continue
		}
		rep.Records++
		if rep.FirstAt.IsZero() {
			rep.FirstAt = r.RecordedAt
		}
		rep.LastAt = r.RecordedAt
		if r.Erased {
			rep.Erased.Records++
		}
		for _, a := range []string{r.Email, r.NewEmail} {
			if a != "" && !slices.Contains(rep.Addresses, a) {
				rep.Addresses = append(rep.Addresses, a)
			}
		}
		t := sites[r.Site]
		if t == nil {
			t = &track{site: &SiteReport{Site: r.Site, Purposes: []PurposeReport{}}, index: map[string]int{}}
			sites[r.Site] = t
			order = append(order, r.Site)
		}
		switch r.Event {
		case "confirm":
			t.site.ConfirmedAt = r.RecordedAt
		case "rectify":
			t.site.RectifiedAt = r.RecordedAt
		}
		for _, k := range sortedKeys(r.Choices) {
			v := r.Choices[k]
			i, ok := t.index[k]
			if !ok {
				i = len(t.site.Purposes)
				t.index[k] = i
				t.site.Purposes = append(t.site.Purposes, PurposeReport{Purpose: k})
			}
			p := &t.site.Purposes[i]
			switch {
			case v == "granted" && p.State != "granted":
				p.GivenAt, p.GivenSource = r.RecordedAt, r.Source
			case v == "denied" && p.State == "granted":
				p.WithdrawnAt, p.WithdrawnSource = r.RecordedAt, r.Source
			}
			if v != p.State {
				p.Record = r.ID
			}
			p.State = v
		}
		if r.Source == "admin" {
			req := RequestReport{At: r.RecordedAt, Site: r.Site, Event: r.Event, Record: r.ID, Reason: r.Reason}
			if r.Event == "rectify" {
				req.From, req.To = r.Email, r.NewEmail
			} else {
				for _, k := range sortedKeys(r.Choices) {
					if r.Choices[k] == "denied" {
						req.Purposes = append(req.Purposes, k)
					}
				}
			}
			rep.Requests = append(rep.Requests, req)
		}
	}
	slices.Sort(order)
	for _, id := range order {
		s := sites[id].site
		slices.SortFunc(s.Purposes, func(a, b PurposeReport) int { return strings.Compare(a.Purpose, b.Purpose) })
		rep.Sites = append(rep.Sites, *s)
	}
	return rep
}
