(component
  secret-text-line (import "x" (func))
)
