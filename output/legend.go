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
	t := LegendTableData(rows)
	return renderTable(w, t.Header, t.Rows)
}

// LegendTableData is DemoLegend's table.
func LegendTableData(rows []LegendRow) Table {
	t := Table{Title: "What the demo injected, and what tcpscope found", Header: []string{"INJECTED FAULT", "FOUND"}}
	for _, r := range rows {
		t.Rows = append(t.Rows, []string{r.Fault, r.Finding})
	}
	return t
}
