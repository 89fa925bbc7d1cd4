package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"

	"golang.org/x/term"

	"github.com/assent/assent/store"
)

const userUsage = "want: assent user create --email E [--role admin|viewer] | list | delete E"

// cmdUser manages console users. The password comes from ASSENT_PASSWORD,
// or is asked for on the terminal without echo; never from a flag, which
// would leave it in the shell's history and the process list.
func cmdUser(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := flagsFor("user", []string{"data", "database", "server", "email", "role"}, args, stderr)
	if err != nil {
		return err
	}
	if len(f.args) == 0 {
		return usageError{userUsage}
	}
	verb := f.args[0]
	switch {
	case verb == "create" && len(f.args) == 1 && f.str("email") != "", verb == "list" && len(f.args) == 1, verb == "delete" && len(f.args) == 2:
	default:
		return usageError{userUsage}
	}
	role, err := store.ParseRole(f.str("role"))
	if err != nil {
		return usageError{"--role: want admin or viewer"}
	}
	var password string
	if verb == "create" {
		if password, err = readPassword(stderr); err != nil {
			return err
		}
	}
	l, err := openLedger(ctx, f, verb == "create")
	if err != nil {
		return err
	}
	defer l.Close()
	switch verb {
	case "create":
		email := f.str("email")
		if l.remote != nil {
			err = l.remote.getJSON(ctx, http.MethodPost, "/v1/admin/users", map[string]string{"email": email, "role": string(role), "password": password}, nil)
		} else {
			_, err = l.st.CreateUserBy(ctx, "cli", email, role, password)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "console user %s created with role %s; sign in at /admin/\n", store.NormalizeEmail(email), role)
		return nil
	case "list":
		var users []store.User
		if l.remote != nil {
			err = l.remote.getJSON(ctx, http.MethodGet, "/v1/admin/users", nil, &users)
		} else {
			users, err = l.st.Users(ctx)
		}
		if err != nil {
			return err
		}
		for _, u := range users {
			fmt.Fprintf(stdout, "%s\t%s\t%s\n", u.Email, u.Role, u.CreatedAt.UTC().Format("2006-01-02T15:04:05Z"))
		}
		return nil
	}
	email := store.NormalizeEmail(f.args[1])
	if l.remote != nil {
		return l.remote.getJSON(ctx, http.MethodDelete, "/v1/admin/users/"+url.PathEscape(email), nil, nil)
	}
	return l.st.DeleteUserBy(ctx, "cli", email)
}

// readPassword takes ASSENT_PASSWORD, else asks twice on the terminal. The
// ledger checks its length.
func readPassword(stderr io.Writer) (string, error) {
	if pw, ok := os.LookupEnv("ASSENT_PASSWORD"); ok {
		return pw, nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return "", errors.New("no password: set ASSENT_PASSWORD, or run in a terminal to be asked")
	}
	fmt.Fprintf(stderr, "Password (at least %d characters): ", store.MinPasswordLen)
	a, err := term.ReadPassword(fd)
	fmt.Fprintln(stderr)
	if err != nil {
		return "", err
	}
	fmt.Fprint(stderr, "Same password again: ")
	b, err := term.ReadPassword(fd)
	fmt.Fprintln(stderr)
	if err != nil {
		return "", err
	}
	if string(a) != string(b) {
		return "", errors.New("the two passwords differ")
	}
	return string(a), nil
}
