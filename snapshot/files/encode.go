package files

import (
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// EncodeDescs and the functions below are the msgpack encodings the image
// stores; the engine core may use them or encode Desc and FD itself.
func EncodeDescs(descs []Desc) ([]byte, error) {
	b, err := msgpack.Marshal(descs)
	if err != nil {
		return nil, fmt.Errorf("encode descriptions: %w", err)
	}
	return b, nil
}

// DecodeDescs is the inverse of EncodeDescs.
func DecodeDescs(b []byte) ([]Desc, error) {
	var d []Desc
	if err := msgpack.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("decode descriptions: %w", err)
	}
	return d, nil
}

// EncodeFDs encodes one process's fd list.
func EncodeFDs(fds []FD) ([]byte, error) {
	b, err := msgpack.Marshal(fds)
	if err != nil {
		return nil, fmt.Errorf("encode fds: %w", err)
	}
	return b, nil
}

// DecodeFDs is the inverse of EncodeFDs.
func DecodeFDs(b []byte) ([]FD, error) {
	var f []FD
	if err := msgpack.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("decode fds: %w", err)
	}
	return f, nil
}
