//go:build !unix

package transport

import "errors"

// rawWrites: elsewhere, every connection's writer has a goroutine of its
// own and writes through the net package.
const rawWrites = false

func rawWrite(int, []byte) (int, error) { return 0, errors.New("no raw writes on this system") }
