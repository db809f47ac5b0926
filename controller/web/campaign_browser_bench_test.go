package web

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// BenchmarkCampaignPage65536Browser loads the same campaign page in
// Chromium (headless; skipped without it) and times each load from the
// navigation until the page is drawn: the scope's and all 256 networks'
// band rows, and the charts of the 12 networks the view ships. That is
// what a reader waits for, with the bundle's parsing and drawing in it.
func BenchmarkCampaignPage65536Browser(b *testing.B) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		b.Skip("needs Chromium (Debian package chromium; bash deploy/install-deps.sh web)")
	}
	e, _, urls := benchCampaign(b)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.UserDataDir(b.TempDir()),
		chromedp.IgnoreCertErrors, chromedp.WindowSize(1280, 1000),
		// Only the test's server, on loopback: no name resolves, no
		// component updates or pings.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("no-pings", true))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	tab, cancelTab := chromedp.NewContext(actx)
	defer cancelTab()
	if err := chromedp.Do(tab, chromedp.Navigate(e.web.URL+"/login"), chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), "viewer-secret"), chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("#campaigns"))); err != nil {
		b.Fatalf("log in: %v", err)
	}
	drawn := fmt.Sprintf(`document.querySelectorAll('#bands .band-row').length === %d && document.querySelectorAll('#charts figure .uplot').length === %d`,
		1+benchNetworks, MaxViewSeriesNetworks)
	var loads int
	var took time.Duration
	for b.Loop() {
		t := time.Now()
		if err := chromedp.Do(tab, chromedp.Navigate(urls[0])); err != nil {
			b.Fatal(err)
		}
		if _, err := chromedp.Run(tab, chromedp.Poll[bool](drawn, chromedp.WithPollingInterval(5*time.Millisecond),
			chromedp.WithPollingTimeout(benchMaxLoad))); err != nil {
			b.Fatalf("load %d: not drawn within %s: %v", loads+1, benchMaxLoad, err)
		}
		took += time.Since(t)
		loads++
	}
	b.ReportMetric(float64(took.Microseconds())/1000/float64(loads), "ms/load")
}
