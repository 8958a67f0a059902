//! The service's OData model and its CSDL document, served at `{prefix}/$metadata`
//! as Graph serves its own. The model is read from [`Property`], so a property added
//! there shows up here, in the OpenAPI schemas (see `super::openapi`) and in the
//! JSON, all at once.

use std::fmt::Write as _;

use axum::{
    http::{StatusCode, Uri, header},
    response::{IntoResponse, Response},
};

use crate::domain::{Kind, Property};

/// The path of the CSDL document after a prefix.
pub const METADATA: &str = "/$metadata";
/// The schema's namespace, as in Graph.
pub const NAMESPACE: &str = "microsoft.graph";
/// The entity type's name in [`NAMESPACE`].
pub const ENTITY_TYPE: &str = "accessPackageAssignment";
/// The entity set that `@odata.context` URLs name (`$metadata#accessPackageAssignments`).
pub const ENTITY_SET: &str = "accessPackageAssignments";

/// The bound function that lists the caller's own assignments.
pub const FILTER_BY_CURRENT_USER: &str = "filterByCurrentUser";
/// The enum type of its `on` parameter.
pub const FILTER_BY_CURRENT_USER_OPTIONS: &str =
    "accessPackageAssignmentFilterByCurrentUserOptions";

/// One structural property of the entity type, as the model declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdmProperty {
    pub property: Property,
    /// `Edm.String`, `Edm.Boolean` or `Edm.DateTimeOffset`.
    pub edm_type: &'static str,
    /// Whether the property is part of the key (only `id`).
    pub key: bool,
    /// Whether a create must carry it (and so every stored assignment has it).
    pub required: bool,
}

impl EdmProperty {
    /// `Nullable="false"` in CSDL: the key, and what a create must carry.
    pub fn nullable(self) -> bool {
        !(self.key || self.required)
    }
}

/// The properties of `microsoft.graph.accessPackageAssignment`, in Graph's order.
pub fn properties() -> impl Iterator<Item = EdmProperty> {
    Property::ALL.into_iter().map(|property| EdmProperty {
        property,
        edm_type: property.edm_type(),
        key: property.kind() == Kind::Key,
        required: property.required_on_create(),
    })
}

/// `GET {prefix}/$metadata`: the service's CSDL document.
///
/// Served without a token, like `/openapi.json`: it describes the API, not data.
#[utoipa::path(
    get,
    path = METADATA,
    operation_id = "metadata",
    tag = "service",
    summary = "The OData CSDL document of the service's model",
    description = "The entity type `microsoft.graph.accessPackageAssignment`, and the container through which `identityGovernance/entitlementManagement/accessPackageAssignments` reaches it. `@odata.context` URLs of the API point into this document. No token is needed.",
    responses(
        (status = 200, description = "The CSDL document (OData 4.0 XML)", content_type = "application/xml", body = String),
    ),
)]
pub async fn metadata(uri: Uri) -> Result<Response, super::ApiError> {
    // No option applies to the model; none is silently ignored either.
    super::query::QueryOptions::parse(
        uri.query(),
        super::query::Dialect::Beta,
        super::query::Accepts::Nothing,
    )?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/xml")],
        csdl(),
    )
        .into_response())
}

/// The CSDL XML document.
///
/// The entity set is where Graph has it: `identityGovernance` (a singleton) →
/// `entitlementManagement` (contained) → `accessPackageAssignments`. One
/// simplification: in Graph that last navigation property *contains* its target,
/// while here it is bound to a top-level entity set `accessPackageAssignments`, because
/// the `@odata.context` URLs the service writes (as the seed page and Graph's own
/// examples do) are `$metadata#accessPackageAssignments[/$entity]`, and such a URL
/// names an entity set of the container. With the binding, both the request URL and
/// the context URL resolve in this model.
///
/// `identityGovernance` has no key, as in Graph: its only instance is the singleton
/// (OData 4.01 lets a type used only by singletons omit it).
pub fn csdl() -> String {
    let mut xml = String::with_capacity(2048);
    xml.push_str(concat!(
        r#"<?xml version="1.0" encoding="utf-8"?>"#,
        "\n",
        r#"<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">"#,
        "\n  <edmx:DataServices>\n",
    ));
    let ns = NAMESPACE;
    let _ = writeln!(
        xml,
        r#"    <Schema Namespace="{ns}" Alias="graph" xmlns="http://docs.oasis-open.org/odata/ns/edm">"#
    );

    // The entity type, from the property list.
    let _ = writeln!(xml, r#"      <EntityType Name="{ENTITY_TYPE}">"#);
    xml.push_str("        <Key>\n");
    for p in properties().filter(|p| p.key) {
        let _ = writeln!(
            xml,
            r#"          <PropertyRef Name="{}" />"#,
            escape(p.property.name())
        );
    }
    xml.push_str("        </Key>\n");
    for p in properties() {
        let nullable = if p.nullable() {
            ""
        } else {
            r#" Nullable="false""#
        };
        let _ = writeln!(
            xml,
            r#"        <Property Name="{}" Type="{}"{nullable} />"#,
            escape(p.property.name()),
            escape(p.edm_type),
        );
    }
    xml.push_str("      </EntityType>\n");

    // filterByCurrentUser(on='target'), bound to the collection, as Graph declares
    // it (its `/$count` and the collection's are OData's own, with no declaration).
    let _ = write!(
        xml,
        concat!(
            r#"      <EnumType Name="{options}">"#,
            "\n",
            r#"        <Member Name="target" Value="0" />"#,
            "\n",
            r#"        <Member Name="createdBy" Value="1" />"#,
            "\n      </EnumType>\n",
            r#"      <Function Name="{function}" IsBound="true" IsComposable="true">"#,
            "\n",
            r#"        <Parameter Name="bindingParameter" Type="Collection({ns}.{entity})" />"#,
            "\n",
            r#"        <Parameter Name="on" Type="{ns}.{options}" Nullable="false" />"#,
            "\n",
            r#"        <ReturnType Type="Collection({ns}.{entity})" />"#,
            "\n      </Function>\n",
        ),
        ns = ns,
        entity = ENTITY_TYPE,
        options = FILTER_BY_CURRENT_USER_OPTIONS,
        function = FILTER_BY_CURRENT_USER,
    );

    // The path to it: identityGovernance/entitlementManagement/accessPackageAssignments.
    let _ = write!(
        xml,
        concat!(
            r#"      <EntityType Name="entitlementManagement">"#,
            "\n        <Key>\n",
            r#"          <PropertyRef Name="id" />"#,
            "\n        </Key>\n",
            r#"        <Property Name="id" Type="Edm.String" Nullable="false" />"#,
            "\n",
            r#"        <NavigationProperty Name="{set}" Type="Collection({ns}.{entity})" />"#,
            "\n      </EntityType>\n",
            r#"      <EntityType Name="identityGovernance">"#,
            "\n",
            r#"        <NavigationProperty Name="entitlementManagement" Type="{ns}.entitlementManagement" ContainsTarget="true" />"#,
            "\n      </EntityType>\n",
            r#"      <EntityContainer Name="GraphService">"#,
            "\n",
            r#"        <Singleton Name="identityGovernance" Type="{ns}.identityGovernance">"#,
            "\n",
            r#"          <NavigationPropertyBinding Path="entitlementManagement/{set}" Target="{set}" />"#,
            "\n        </Singleton>\n",
            r#"        <EntitySet Name="{set}" EntityType="{ns}.{entity}" />"#,
            "\n      </EntityContainer>\n",
            "    </Schema>\n",
            "  </edmx:DataServices>\n",
            "</edmx:Edmx>\n",
        ),
        ns = ns,
        set = ENTITY_SET,
        entity = ENTITY_TYPE,
    );
    xml
}

/// Escapes text for an XML attribute value.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_and_what_a_create_needs_are_not_nullable() {
        let not_null: Vec<&str> = properties()
            .filter(|p| !p.nullable())
            .map(|p| p.property.name())
            .collect();
        assert_eq!(
            not_null,
            ["id", "accessPackageId", "assignmentPolicyId", "targetId"]
        );
    }

    #[test]
    fn escapes_attribute_values() {
        assert_eq!(
            escape(r#"a<"b">&'c'"#),
            "a&lt;&quot;b&quot;&gt;&amp;&apos;c&apos;"
        );
    }
}
