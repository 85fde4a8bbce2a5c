package p4rt

import (
	"fmt"

	p4v1 "github.com/p4lang/p4runtime/go/p4/v1"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// A Write's batches are sized update by update before they are sent
// (batchEnd), which leaves every update's encoded size cached in its
// messages; gRPC's codec would size the whole request again before
// encoding it. So a batch is encoded here, once, reusing those sizes, and
// handed to gRPC as bytes: the same WriteRequest on the wire, without the
// second sizing pass (a third of the client's cost of a large batch).

// encodedWrite is a WriteRequest already in its wire form, in a buffer of
// gRPC's pool, which gRPC returns once it has sent it.
type encodedWrite struct{ b *[]byte }

// writeCodec sends an encodedWrite as it is and anything else as gRPC's
// proto codec does.
type writeCodec struct{ encoding.CodecV2 }

var theWriteCodec = writeCodec{encoding.GetCodecV2("proto")}

func (c writeCodec) Marshal(v any) (mem.BufferSlice, error) {
	if w, ok := v.(*encodedWrite); ok {
		return mem.BufferSlice{mem.NewBuffer(w.b, mem.DefaultBufferPool())}, nil
	}
	return c.CodecV2.Marshal(v)
}

// encodeWrite appends the wire form of a WriteRequest with head's fields
// and updates to b. sizes[i] is proto.Size(updates[i]), computed since the
// update last changed: its messages' size caches are current.
func encodeWrite(b []byte, head *p4v1.WriteRequest, updates []*p4v1.Update, sizes []int) ([]byte, error) {
	// Fields may come in any order on the wire, so the updates (field 4)
	// can follow the others.
	b, err := proto.MarshalOptions{}.MarshalAppend(b, head)
	if err != nil {
		return nil, err
	}
	cached := proto.MarshalOptions{UseCachedSize: true}
	for i, u := range updates {
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(sizes[i]))
		n := len(b)
		if b, err = cached.MarshalAppend(b, u); err != nil {
			return nil, err
		}
		if len(b)-n != sizes[i] {
			return nil, fmt.Errorf("update %d changed while it was being written", i)
		}
	}
	return b, nil
}

// newEncodedWrite encodes a batch into a buffer of gRPC's pool.
func newEncodedWrite(head *p4v1.WriteRequest, updates []*p4v1.Update, sizes []int) (*encodedWrite, error) {
	n := proto.Size(head)
	for _, s := range sizes {
		n += 1 + protowire.SizeVarint(uint64(s)) + s
	}
	buf := mem.DefaultBufferPool().Get(n)
	b, err := encodeWrite((*buf)[:0], head, updates, sizes)
	if err != nil {
		mem.DefaultBufferPool().Put(buf)
		return nil, err
	}
	*buf = b
	return &encodedWrite{buf}, nil
}
