"""Operations edge: metrics, HTTP endpoints, logging."""
