package server

import (
	"archive/zip"
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/xuri/excelize/v2"

	"github.com/assent/assent/store"
)

// The export's columns before and after the per-purpose ones, in API.md's
// order.
var (
	recordHead = []string{"id", "recorded_at", "site", "event", "source", "basis", "email", "visitor_id", "country", "regime", "notice_version", "notice_hash"}
	recordTail = []string{"ip", "user_agent", "page_url", "gpc", "dnt", "prev_hash", "hash"}
	auditHead  = []string{"at", "token", "action", "detail"}
	signupHead = []string{"email", "first_signup_at", "last_change_at", "double_opt_in", "signup_at", "signup_ip",
		"confirmed_at", "confirm_ip", "unsubscribe_url", "suppressed"}
)

// Formats are the export formats, and the MIME type of each.
var Formats = map[string]string{
	"csv":   "text/csv; charset=utf-8",
	"xlsx":  "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
	"jsonl": "application/x-ndjson",
}

// xlsxMaxRows is the most rows a sheet holds, header included (a variable
// so that tests need not write a million rows).
var xlsxMaxRows = excelize.TotalRows

// ErrTooManyRows is an XLSX export that would not fit in one sheet.
var ErrTooManyRows = fmt.Errorf("an XLSX sheet holds at most %d rows under its header: narrow the period, or export csv or jsonl", excelize.TotalRows-1)

// RecordHeader is the CSV/XLSX header row for site.
func RecordHeader(site store.Site) []string {
	h := append([]string{}, recordHead...)
	for _, p := range site.Purposes {
		h = append(h, p.ID)
	}
	return append(h, recordTail...)
}

// RecordRow is one record as CSV/XLSX cells, purposes in the site's order,
// before formula neutralising.
func RecordRow(site store.Site, r store.Record) []string {
	row := make([]string, 0, len(recordHead)+len(site.Purposes)+len(recordTail))
	row = append(row, r.ID, fmtTime(r.RecordedAt), r.Site, r.Event, r.Source, r.Basis,
		r.Email, r.VisitorID, r.Country, r.Regime, r.NoticeVersion, r.NoticeHash)
	for _, p := range site.Purposes {
		row = append(row, r.Choices[p.ID])
	}
	return append(row, r.IP, r.UserAgent, r.PageURL, strconv.FormatBool(r.GPC), strconv.FormatBool(r.DNT), r.PrevHash, r.Hash)
}

// WriteRecords streams a site's records to w in format (csv, xlsx or jsonl),
// one at a time: each calls its function once per record, oldest first.
// Memory stays constant whatever the number of records; XLSX rows go to a
// temporary file until the workbook is zipped onto w at the end.
func WriteRecords(w io.Writer, format string, site store.Site, each func(func(store.Record) error) error) error {
	if format == "jsonl" {
		return writeJSONL(w, func(enc *json.Encoder) error {
			return each(func(r store.Record) error { return enc.Encode(r) })
		})
	}
	return writeTable(w, format, "consents", RecordHeader(site), func(row func([]string) error) error {
		return each(func(r store.Record) error { return row(RecordRow(site, r)) })
	})
}

// signupJSON is one subject in the signups JSON Lines export: the same
// fields as the CSV columns, with the purposes as an object so that a
// purpose id can never collide with a column name.
type signupJSON struct {
	Email         string            `json:"email"`
	FirstSignupAt string            `json:"first_signup_at"`
	LastChangeAt  string            `json:"last_change_at"`
	DoubleOptIn   string            `json:"double_opt_in"`
	SignupAt      string            `json:"signup_at"`
	SignupIP      string            `json:"signup_ip"`
	ConfirmedAt   string            `json:"confirmed_at"`
	ConfirmIP     string            `json:"confirm_ip"`
	UnsubURL      string            `json:"unsubscribe_url"`
	Suppressed    bool              `json:"suppressed"`
	Purposes      map[string]string `json:"purposes"`
}

// WriteSubjects streams one row per subject with a signup on site: the
// signups export, with the double opt-in proof (the signup that asked for
// confirmation and the confirming click) and each person's unsubscribe link
// (unsub; "" for an erased person).
func WriteSubjects(w io.Writer, format string, site store.Site, unsub func(email string) string, each func(func(store.SubjectState) error) error) error {
	link := func(email string) string {
		if email == "" {
			return ""
		}
		return unsub(email)
	}
	var purposes []string
	for _, p := range site.Purposes {
		if p.Signup {
			purposes = append(purposes, p.ID)
		}
	}
	if format == "jsonl" {
		return writeJSONL(w, func(enc *json.Encoder) error {
			return each(func(st store.SubjectState) error {
				v := signupJSON{Email: st.Email, FirstSignupAt: fmtTime(st.FirstSignupAt), LastChangeAt: fmtTime(st.LastChangeAt),
					DoubleOptIn: orNone(st.DoubleOptIn), SignupAt: fmtTime(st.PendingAt), SignupIP: st.PendingIP,
					ConfirmedAt: fmtTime(st.ConfirmedAt), ConfirmIP: st.ConfirmedIP, UnsubURL: link(st.Email),
					Suppressed: st.Suppressed, Purposes: map[string]string{}}
				for _, p := range purposes {
					v.Purposes[p] = st.Purposes[site.ID][p]
				}
				return enc.Encode(v)
			})
		})
	}
	header := append(append([]string{}, signupHead...), purposes...)
	return writeTable(w, format, "signups", header, func(row func([]string) error) error {
		return each(func(st store.SubjectState) error {
			r := []string{st.Email, fmtTime(st.FirstSignupAt), fmtTime(st.LastChangeAt), orNone(st.DoubleOptIn),
				fmtTime(st.PendingAt), st.PendingIP, fmtTime(st.ConfirmedAt), st.ConfirmedIP, link(st.Email), strconv.FormatBool(st.Suppressed)}
			for _, p := range purposes {
				r = append(r, st.Purposes[site.ID][p])
			}
			return row(r)
		})
	})
}

// WriteAudit streams the audit log in format.
func WriteAudit(w io.Writer, format string, each func(func(store.AuditEntry) error) error) error {
	if format == "jsonl" {
		return writeJSONL(w, func(enc *json.Encoder) error {
			return each(func(e store.AuditEntry) error { return enc.Encode(e) })
		})
	}
	return writeTable(w, format, "audit", auditHead, func(row func([]string) error) error {
		return each(func(e store.AuditEntry) error {
			return row([]string{fmtTime(e.At), e.Token, e.Action, e.Detail})
		})
	})
}

func writeJSONL(w io.Writer, fn func(*json.Encoder) error) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	if err := fn(enc); err != nil {
		return err
	}
	return bw.Flush()
}

// writeTable writes a header and the rows fill gives to a CSV or XLSX
// table. Every cell is neutralised against formulas (safeCell) in both
// formats, so the two hold the same text.
func writeTable(w io.Writer, format, sheet string, header []string, fill func(row func([]string) error) error) error {
	var t table
	switch format {
	case "csv":
		t = newCSVTable(w)
	case "xlsx":
		var err error
		if t, err = newXLSXTable(w, sheet, len(header)); err != nil {
			return err
		}
	default:
		return fmt.Errorf("export format %q: want csv, xlsx or jsonl", format)
	}
	if err := t.header(header); err != nil {
		return t.finish(err)
	}
	return t.finish(fill(func(cells []string) error { return t.row(safeRow(cells)) }))
}

// table is a spreadsheet written one row at a time.
type table interface {
	header(cells []string) error
	row(cells []string) error
	// finish completes the file when err is nil, else abandons it (and
	// removes its temporary files), and returns the first error.
	finish(err error) error
}

// csvTable is RFC 4180 with CRLF line ends and a UTF-8 byte-order mark, so
// that spreadsheets read the text as UTF-8.
type csvTable struct {
	bw *bufio.Writer
	cw *csv.Writer
}

func newCSVTable(w io.Writer) *csvTable {
	bw := bufio.NewWriterSize(w, 64<<10)
	cw := csv.NewWriter(bw)
	cw.UseCRLF = true
	return &csvTable{bw: bw, cw: cw}
}

func (t *csvTable) header(cells []string) error {
	if _, err := t.bw.WriteString("\ufeff"); err != nil {
		return err
	}
	return t.cw.Write(cells)
}

func (t *csvTable) row(cells []string) error { return t.cw.Write(cells) }

func (t *csvTable) finish(err error) error {
	if err != nil {
		return err
	}
	t.cw.Flush()
	if err := t.cw.Error(); err != nil {
		return err
	}
	return t.bw.Flush()
}

// xlsxTable is one sheet written with excelize's StreamWriter, which keeps
// at most a 16 MiB chunk of rows in memory and the rest in a temporary file.
// Cells are inline strings, never formulas.
type xlsxTable struct {
	w    io.Writer
	f    *excelize.File
	sw   *excelize.StreamWriter
	n    int // rows written, header included
	vals []any
}

func newXLSXTable(w io.Writer, sheet string, cols int) (*xlsxTable, error) {
	f := excelize.NewFile()
	// File.WriteTo zips the workbook into a memory buffer before copying it
	// out; a zip writer on w itself keeps the export in constant memory (the
	// buffer stays empty).
	f.SetZipWriter(func(io.Writer) excelize.ZipWriter { return zip.NewWriter(w) })
	t := &xlsxTable{w: w, f: f, vals: make([]any, cols)}
	if err := f.SetSheetName(f.GetSheetName(0), sheet); err != nil {
		return nil, t.finish(err)
	}
	sw, err := f.NewStreamWriter(sheet)
	if err != nil {
		return nil, t.finish(err)
	}
	t.sw = sw
	// Column widths and the frozen header row must come before any row.
	if err := sw.SetColWidth(1, max(cols, 1), 18); err != nil {
		return nil, t.finish(err)
	}
	if err := sw.SetPanes(&excelize.Panes{Freeze: true, YSplit: 1, TopLeftCell: "A2", ActivePane: "bottomLeft"}); err != nil {
		return nil, t.finish(err)
	}
	return t, nil
}

func (t *xlsxTable) header(cells []string) error {
	bold, err := t.f.NewStyle(&excelize.Style{Font: &excelize.Font{Bold: true}})
	if err != nil {
		return err
	}
	return t.write(cells, excelize.RowOpts{StyleID: bold})
}

func (t *xlsxTable) row(cells []string) error { return t.write(cells) }

func (t *xlsxTable) write(cells []string, opts ...excelize.RowOpts) error {
	if t.n >= xlsxMaxRows {
		return ErrTooManyRows
	}
	t.n++
	vals := t.vals[:0]
	for _, c := range cells {
		if c == "" {
			vals = append(vals, nil) // no cell at all: a smaller file
		} else {
			vals = append(vals, c)
		}
	}
	cell, err := excelize.CoordinatesToCellName(1, t.n)
	if err != nil {
		return err
	}
	return t.sw.SetRow(cell, vals, opts...)
}

func (t *xlsxTable) finish(err error) error {
	if err == nil && t.sw != nil {
		if err = t.sw.Flush(); err == nil {
			_, err = t.f.WriteTo(t.w)
		}
	}
	return errors.Join(err, t.f.Close())
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

// safeCell neutralises a cell that a spreadsheet would run as a formula
// (OWASP "CSV injection"): one starting with =, +, -, @, tab or CR gets a
// leading apostrophe.
func safeCell(s string) string {
	if s != "" && formulaStart(s[0]) {
		s = "'" + s
	}
	// A spreadsheet in a locale whose separator is ';' (or one told to
	// split on ',') starts a new cell after it: neutralise a formula there
	// too, after any spaces.
	if !strings.ContainsAny(s, ";,") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteByte(s[i])
		if s[i] != ';' && s[i] != ',' {
			continue
		}
		j := i + 1
		for j < len(s) && s[j] == ' ' {
			j++
		}
		if j < len(s) && formulaStart(s[j]) {
			b.WriteString(s[i+1 : j])
			b.WriteByte('\'')
			i = j - 1
		}
	}
	return b.String()
}

func formulaStart(c byte) bool {
	return c == '=' || c == '+' || c == '-' || c == '@' || c == '\t' || c == '\r'
}

func safeRow(row []string) []string {
	for i := range row {
		row[i] = safeCell(row[i])
	}
	return row
}
