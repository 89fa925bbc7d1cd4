package server

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/assent/assent/store"
)

// RecordColumns are the export's columns before and after the per-purpose
// ones, in API.md's order.
var (
	recordHead = []string{"id", "recorded_at", "site", "event", "source", "basis", "email", "visitor_id", "country", "regime", "notice_version", "notice_hash"}
	recordTail = []string{"ip", "user_agent", "page_url", "gpc", "dnt", "prev_hash", "hash"}
)

// RecordRow is one record as export cells, purposes in the site's order.
func RecordRow(site store.Site, r store.Record) []string {
	row := []string{r.ID, r.RecordedAt.UTC().Format(rfc3339Nano), r.Site, r.Event, r.Source, r.Basis,
		r.Email, r.VisitorID, r.Country, r.Regime, r.NoticeVersion, r.NoticeHash}
	for _, p := range site.Purposes {
		row = append(row, r.Choices[p.ID])
	}
	return append(row, r.IP, r.UserAgent, r.PageURL, strconv.FormatBool(r.GPC), strconv.FormatBool(r.DNT), r.PrevHash, r.Hash)
}

// RecordHeader is the header row for site.
func RecordHeader(site store.Site) []string {
	h := append([]string{}, recordHead...)
	for _, p := range site.Purposes {
		h = append(h, p.ID)
	}
	return append(h, recordTail...)
}

// WriteRecords streams records in format to w, one at a time.
func WriteRecords(w io.Writer, format string, site store.Site, each func(func(store.Record) error) error) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	defer bw.Flush()
	switch format {
	case "jsonl":
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false)
		return each(func(r store.Record) error { return enc.Encode(r) })
	case "csv":
		bw.WriteString("\ufeff") // UTF-8 byte-order mark, so spreadsheets read UTF-8
		cw := csv.NewWriter(bw)
		cw.UseCRLF = true
		if err := cw.Write(RecordHeader(site)); err != nil {
			return err
		}
		err := each(func(r store.Record) error { return cw.Write(safeRow(RecordRow(site, r))) })
		cw.Flush()
		if err == nil {
			err = cw.Error()
		}
		return err
	}
	return fmt.Errorf("export format %q is not supported yet", format)
}

// WriteSubjects streams one row per subject of a site's signups.
func WriteSubjects(w io.Writer, format string, site store.Site, each func(func(store.SubjectState) error) error) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	defer bw.Flush()
	var purposes []string
	for _, p := range site.Purposes {
		if p.Signup {
			purposes = append(purposes, p.ID)
		}
	}
	row := func(st store.SubjectState) []string {
		r := []string{st.Email, fmtTime(st.FirstSignupAt), fmtTime(st.LastChangeAt), orNone(st.DoubleOptIn), strconv.FormatBool(st.Suppressed)}
		for _, p := range purposes {
			r = append(r, st.Purposes[site.ID][p])
		}
		return r
	}
	header := append([]string{"email", "first_signup_at", "last_change_at", "double_opt_in", "suppressed"}, purposes...)
	switch format {
	case "jsonl":
		enc := json.NewEncoder(bw)
		return each(func(st store.SubjectState) error {
			m := map[string]string{}
			for i, v := range row(st) {
				m[header[i]] = v
			}
			return enc.Encode(m)
		})
	case "csv":
		bw.WriteString("\ufeff")
		cw := csv.NewWriter(bw)
		cw.UseCRLF = true
		cw.Write(header)
		err := each(func(st store.SubjectState) error { return cw.Write(safeRow(row(st))) })
		cw.Flush()
		return err
	}
	return fmt.Errorf("export format %q is not supported yet", format)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(rfc3339Nano)
}

// safeCell neutralises a cell that a spreadsheet would run as a formula.
func safeCell(s string) string {
	if s != "" && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@' || s[0] == '\t' || s[0] == '\r') {
		return "'" + s
	}
	return s
}

func safeRow(row []string) []string {
	for i := range row {
		row[i] = safeCell(row[i])
	}
	return row
}
