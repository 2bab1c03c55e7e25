(component (import "example:secret/backdoor@1.0.0" (instance (export "open" (func)))))
