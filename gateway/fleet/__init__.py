"""What the fleet is: the registry file and its model, model ids and the one resolver, the live
catalog, context windows and learned facts, what is loaded where, reload, favorites. Imports
the store, core and the edge."""
