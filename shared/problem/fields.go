package problem

// Field codes: the code of one entry of a problem's errors[], saying what is
// wrong with that field. Like the codes, they are stable and docs/errors.md
// lists every one (a test fails when they disagree).
const (
	FieldRequired     = "REQUIRED"
	FieldTooLong      = "TOO_LONG"
	FieldTooMany      = "TOO_MANY"
	FieldOutOfRange   = "OUT_OF_RANGE"
	FieldDuplicate    = "DUPLICATE"
	FieldUnknownValue = "UNKNOWN_VALUE"
	FieldInvalidValue = "INVALID_VALUE"
	FieldInvalidType  = "INVALID_TYPE"
	FieldUnknown      = "UNKNOWN_FIELD"
	// FieldNotGranted is a spreadsheet an operator has not granted the user.
	FieldNotGranted = "NOT_GRANTED"
	// A reference that failed names its field with the code of its failure.
	FieldRefNotAllowed  = string(RefNotAllowed)
	FieldRefFetchFailed = string(RefFetchFailed)
	FieldRefTooLarge    = string(RefTooLarge)
	FieldRefNotImage    = string(RefNotImage)
)

// FieldCodes returns every field code (for docs and tests).
func FieldCodes() []string {
	return []string{
		FieldRequired, FieldTooLong, FieldTooMany, FieldOutOfRange, FieldDuplicate,
		FieldUnknownValue, FieldInvalidValue, FieldInvalidType, FieldUnknown, FieldNotGranted,
		FieldRefNotAllowed, FieldRefFetchFailed, FieldRefTooLarge, FieldRefNotImage,
	}
}
