// Package field is the error of one config key: each package's Validate names the key path it
// rejects ("forward[1].protocol") and what is wrong, and cmd turns the path into the file and
// line the key was given on. It has no other job and imports nothing of the project.
package field

import (
	"errors"
	"fmt"
)

// Error is a problem with the config key at Path.
type Error struct {
	Path string // dotted, with list indexes: "forward[1].protocol"; "" is the block itself
	Msg  string
}

func (e *Error) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// Errorf makes an Error for the key at path.
func Errorf(path, format string, args ...any) *Error {
	return &Error{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// Join joins path elements: Join("forward[1]", "protocol") is "forward[1].protocol".
func Join(prefix, path string) string {
	switch {
	case prefix == "":
		return path
	case path == "":
		return prefix
	case path[0] == '[':
		return prefix + path
	}
	return prefix + "." + path
}

// Under puts every Error in err under prefix; other errors become Errors of prefix itself.
func Under(prefix string, err error) error {
	var out []error
	Each(err, func(e *Error) { out = append(out, &Error{Path: Join(prefix, e.Path), Msg: e.Msg}) })
	return errors.Join(out...)
}

// Each calls fn for every problem in err (joined errors one by one), in order; an error that
// is not an *Error is a problem of the block as a whole (Path "").
func Each(err error, fn func(*Error)) {
	if err == nil {
		return
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			Each(e, fn)
		}
		return
	}
	var e *Error
	if errors.As(err, &e) {
		fn(e)
		return
	}
	fn(&Error{Msg: err.Error()})
}
