"""fleetsim: a discrete-event simulator of an API-gateway fleet (see ``sim/README.md``)."""
