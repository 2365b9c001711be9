package output

import (
	"fmt"
	"io"
)

// LegendRow pairs a fault the demo injected with what tcpscope found.
type LegendRow struct {
	Fault   string
	Finding string
}

// DemoLegend renders which injected fault produced which finding.
func DemoLegend(w io.Writer, rows []LegendRow) error {
	fmt.Fprintln(w, "\nWhat the demo injected, and what tcpscope found:")
	t := make([][]string, len(rows))
	for i, r := range rows {
		t[i] = []string{r.Fault, r.Finding}
	}
	return renderTable(w, []string{"INJECTED FAULT", "FOUND"}, t)
}
