// Command assent is the one Assent binary: the server and the admin's
// sub-commands. It parses flags and wires geo, store, build and server
// together; the work happens in those packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

const usage = `assent — self-hosted consent capture

Usage:
  assent serve   [--addr :8080] [--data ./data] [--geoip FILE] [--trusted-proxies CIDR,…]
                 [--country-header NAME] [--rate-limit N] [--demo] [--dev]
  assent export  --site ID [--from T] [--to T] [--format csv|xlsx|jsonl] [-o FILE]
  assent subject show|erase --email ADDRESS | --visitor-id ID  (show also --receipt RECORD-ID)
  assent subject withdraw --email ADDRESS [--site ID] [--purpose ID] --reason TEXT
  assent subject rectify  --email OLD --new-email NEW [--name NAME] --reason TEXT
  assent verify
  assent backup  FILE
  assent compact                     (a stopped ledger: drops free pages, erased data with them)
  assent restore FILE                (a stopped ledger: puts a backup in place, re-applies later erasures)
  assent token   create [--name NAME] [--role admin|viewer] | list | revoke NAME
  assent user    create --email E [--role admin|viewer] | list | delete E
                 (the password from ASSENT_PASSWORD, else asked on the terminal)
  assent site    list | show ID | create --file site.json
  assent notice  sha256:HASH
  assent geo     [--geoip FILE] IP...
  assent build   [-o DIR]
  assent migrate --database postgres://…
  assent ledger  copy --data DIR --to postgres://…

Ledger commands take --data DIR, --database postgres://…, or --server URL with the
token in ASSENT_TOKEN.
Every flag has an ASSENT_* environment equivalent; "assent CMD -h" lists them.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs one command and returns its exit status: 0 on success, 1 on
// failure with a one-line reason on stderr, 2 on bad usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmds := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"serve":   cmdServe,
		"export":  cmdExport,
		"subject": cmdSubject,
		"verify":  cmdVerify,
		"backup":  cmdBackup,
		"compact": cmdCompact,
		"restore": cmdRestore,
		"token":   cmdToken,
		"user":    cmdUser,
		"site":    cmdSite,
		"notice":  cmdNotice,
		"geo":     cmdGeo,
		"build":   cmdBuild,
		"migrate": cmdMigrate,
		"ledger":  cmdLedger,
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "assent: unknown command %q (see assent --help)\n", args[0])
		return 2
	}
	err := cmd(ctx, args[1:], stdout, stderr)
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue) || isFlagError(err):
		fmt.Fprintf(stderr, "assent %s: %s\n", args[0], oneLine(err.Error()))
		return 2
	default:
		fmt.Fprintf(stderr, "assent %s: %s\n", args[0], oneLine(err.Error()))
		return 1
	}
}

// isFlagError tells the flag package's own parse errors (bad usage).
func isFlagError(err error) bool {
	var fe flagError
	return errors.As(err, &fe)
}

type flagError struct{ error }

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		// esbuild and validation messages may run over lines; keep the reason
		// on one line, the details after a separator.
		s = strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " | ")), " ")
	}
	return s
}

// flagsFor parses a command's flags, wrapping parse errors as bad usage.
func flagsFor(cmd string, names []string, args []string, stderr io.Writer) (*flags, error) {
	f, err := parseFlags(cmd, names, args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, flagError{err}
	}
	return f, nil
}
