package cloudmonitoring

import (
	"errors"
	"math"

	"google.golang.org/genproto/googleapis/api/distribution"
	"google.golang.org/protobuf/proto"
)

// histogram is distributions with the same buckets added up.
type histogram struct {
	options *distribution.Distribution_BucketOptions
	counts  []int64
	count   int64
}

func (h *histogram) add(d *distribution.Distribution) error {
	if d.GetCount() == 0 {
		return nil
	}
	if d.GetBucketOptions() == nil {
		return errors.New("a latency distribution without buckets")
	}
	if h.options == nil {
		h.options = d.GetBucketOptions()
	} else if !proto.Equal(h.options, d.GetBucketOptions()) {
		return errors.New("latency distributions with different buckets")
	}
	for i, c := range d.GetBucketCounts() {
		if i == len(h.counts) {
			h.counts = append(h.counts, 0)
		}
		h.counts[i] += c
	}
	h.count += d.GetCount()
	return nil
}

// quantile interpolates linearly within the bucket the q quantile falls in. The overflow bucket
// has no upper bound: its lower bound is returned.
func (h *histogram) quantile(q float64) float64 {
	rank := q * float64(h.count)
	var seen float64
	for i, c := range h.counts {
		if c == 0 || seen+float64(c) < rank {
			seen += float64(c)
			continue
		}
		lower, upper := bucketBounds(h.options, i)
		if math.IsInf(upper, 1) {
			return lower
		}
		// The underflow bucket's lower bound is -Inf; a latency is not negative.
		lower = max(lower, min(0, upper))
		return lower + (upper-lower)*(rank-seen)/float64(c)
	}
	return 0
}

// bucketBounds are the bounds of bucket i: 0 is the underflow bucket, and the last the overflow.
func bucketBounds(o *distribution.Distribution_BucketOptions, i int) (lower, upper float64) {
	var bound func(int) float64 // the lower bound of bucket j, the upper bound of bucket j-1
	var finite int
	switch {
	case o.GetLinearBuckets() != nil:
		l := o.GetLinearBuckets()
		finite = int(l.GetNumFiniteBuckets())
		bound = func(j int) float64 { return l.GetOffset() + l.GetWidth()*float64(j-1) }
	case o.GetExponentialBuckets() != nil:
		e := o.GetExponentialBuckets()
		finite = int(e.GetNumFiniteBuckets())
		bound = func(j int) float64 { return e.GetScale() * math.Pow(e.GetGrowthFactor(), float64(j-1)) }
	default:
		b := o.GetExplicitBuckets().GetBounds()
		finite = len(b) - 1
		bound = func(j int) float64 { return b[j-1] }
	}
	lower, upper = math.Inf(-1), math.Inf(1)
	if i > 0 {
		lower = bound(i)
	}
	if i <= finite {
		upper = bound(i + 1)
	}
	return lower, upper
}
