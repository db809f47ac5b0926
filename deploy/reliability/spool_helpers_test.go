package reliability

import (
	"google.golang.org/protobuf/proto"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func protoEqual(a, b *vantagev1.ProbeResult) bool { return proto.Equal(a, b) }
