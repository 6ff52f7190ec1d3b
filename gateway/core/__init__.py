"""What every layer above the edge shares: settings from the environment, the control
plane's side of the error envelope, logging, the request body parsed once. Imports only the edge."""
