package cloudmonitoring

import (
	"math"
	"testing"

	"google.golang.org/genproto/googleapis/api/distribution"
)

func TestQuantileInterpolatesWithinTheBucket(t *testing.T) {
	explicit := &distribution.Distribution_BucketOptions{Options: &distribution.Distribution_BucketOptions_ExplicitBuckets{
		ExplicitBuckets: &distribution.Distribution_BucketOptions_Explicit{Bounds: []float64{10, 100, 1000}}}}
	linear := &distribution.Distribution_BucketOptions{Options: &distribution.Distribution_BucketOptions_LinearBuckets{
		LinearBuckets: &distribution.Distribution_BucketOptions_Linear{NumFiniteBuckets: 3, Width: 50, Offset: 100}}}
	for _, c := range []struct {
		name    string
		options *distribution.Distribution_BucketOptions
		counts  []int64
		q, want float64
	}{
		// Buckets (-Inf,10) [10,100) [100,1000) [1000,+Inf).
		{"explicit", explicit, []int64{0, 50, 50}, 0.95, 100 + 900*0.9},
		{"explicit, underflow from 0", explicit, []int64{100}, 0.5, 5},
		{"explicit, overflow at its lower bound", explicit, []int64{0, 0, 90, 10}, 0.95, 1000},
		{"trailing empty buckets", explicit, []int64{0, 90, 0, 0}, 0.95, 10 + 90*0.95},
		// Buckets (-Inf,100) [100,150) [150,200) [200,250) [250,+Inf).
		{"linear", linear, []int64{0, 0, 100}, 0.5, 175},
	} {
		var n int64
		for _, x := range c.counts {
			n += x
		}
		var h histogram
		if err := h.add(&distribution.Distribution{Count: n, BucketOptions: c.options, BucketCounts: c.counts}); err != nil {
			t.Fatal(err)
		}
		if got := h.quantile(c.q); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%s: quantile %v = %v, want %v", c.name, c.q, got, c.want)
		}
	}
}

func TestHistogramAddsUpTheSameBucketsOnly(t *testing.T) {
	exp := func(growth float64) *distribution.Distribution_BucketOptions {
		return &distribution.Distribution_BucketOptions{Options: &distribution.Distribution_BucketOptions_ExponentialBuckets{
			ExponentialBuckets: &distribution.Distribution_BucketOptions_Exponential{NumFiniteBuckets: 66, GrowthFactor: growth, Scale: 1}}}
	}
	var h histogram
	for _, counts := range [][]int64{{0, 3}, {0, 1, 0, 4}} {
		if err := h.add(&distribution.Distribution{Count: 4, BucketOptions: exp(1.4), BucketCounts: counts}); err != nil {
			t.Fatal(err)
		}
	}
	// 8 values: 4 in [1, 1.4), 4 in [1.4^2, 1.4^3). The median is the top of the first.
	if h.count != 8 || h.quantile(0.5) != 1.4 {
		t.Fatalf("%d values, median %v: want 8, 1.4", h.count, h.quantile(0.5))
	}
	if err := h.add(&distribution.Distribution{Count: 1, BucketOptions: exp(2), BucketCounts: []int64{1}}); err == nil {
		t.Fatal("distributions of other buckets added up")
	}
}
