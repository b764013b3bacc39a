"""HTTP surface: schemas, thin routers, the error handler and the body-size limit."""
