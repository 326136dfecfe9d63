package api_test

import (
	"testing"

	"github.com/matryer/is"

	"github.com/assetgen/assetgen/shared/api"
	"github.com/assetgen/assetgen/shared/ledger"
)

// What a cancel may still charge is each running row's open variants at
// that row's own price: rows of a batch may differ in size, and so in price.
func TestCancellationPricesEachRow(t *testing.T) {
	is := is.New(t)
	fourK := 0.24
	m := &ledger.Manifest{RunMode: ledger.Live, PriceUSD: 0.134, EstimateUSD: 0.134*2 + 0.24*2, Rows: []ledger.ManifestRow{
		{Index: 0, Variants: 2}, {Index: 1, Variants: 2, ImageSize: "4K", PriceUSD: &fourK},
	}}
	rows := []ledger.Row{
		{Index: 0, Status: ledger.Running, Variants: []ledger.Variant{{Status: ledger.Done, CostUSD: 0.134}, {Status: ledger.Running}}},
		{Index: 1, Status: ledger.Running, Variants: []ledger.Variant{{Status: ledger.Running}, {Status: ledger.Running}}},
	}
	c := api.NewCancellation(m, rows, nil)
	is.Equal(c.Kept, 1)
	is.Equal(c.ChargedUSD, 0.134)
	is.Equal(c.MayStillMake, 3)
	is.Equal(c.MayStillChargeUSD, 0.614) // 0.134 + 2 × 0.24
	is.Equal(c.ReleasedUSD, 0.0)         // everything left may still be made
}
