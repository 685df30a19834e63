"""Request and response schemas of the prediction service, one module per resource."""
