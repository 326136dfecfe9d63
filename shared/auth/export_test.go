package auth

// ShortHash exposes shortHash to the tests of the user id form.
var ShortHash = shortHash
