package supapool

// statementNeverRan reports whether the failure proves that the server did
// not run the request's statement: the connection was never made, or
// PostgREST answered that it could not get to the database (PGRST000,
// PGRST001, PGRST002 with 503; PGRST003 with 504).
func statementNeverRan(e *Error) bool {
	if e.Status == 0 {
		return e.neverSent
	}
	switch e.Code {
	case "PGRST000", "PGRST001", "PGRST002":
		return e.Status == 503
	case "PGRST003":
		return e.Status == 504
	}
	return false
}
