package output

import _ "embed"

// Schema is the JSON Schema (draft 2020-12) of both export forms.
//
//go:embed schema/export.schema.json
var Schema []byte
